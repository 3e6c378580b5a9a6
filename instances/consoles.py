"""Console tickets: who may open an instance's console, decided once, redeemed once.

A ticket is a random token whose hash is a Redis key holding the user, the instance and the
kind of console; it expires after CONSOLE_TICKET_SECONDS and is consumed (GETDEL) by the
first socket that presents it, so it is single use even across web processes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from cloudpanel import virt
from cloudpanel.audit.decorators import audited
from cloudpanel.errors import Conflict
from cloudpanel.live.metrics import client as redis_client
from cloudpanel.projects import access
from cloudpanel.virt import console as virt_console
from hosts.connection import connection_uri, console_address, host_uri
from hosts.models import Host

from .models import Instance
from .rules import require_act, require_host_online

_PREFIX = "cloudpanel:console-ticket:"
# A console shows a screen only while the guest runs (or is paused).
CONSOLE_STATES = (Instance.State.RUNNING, Instance.State.PAUSED)


@dataclass(frozen=True)
class TicketGrant:
    """What a redeemed ticket allows: this user, this instance."""

    user_id: int
    instance_id: int


def _key(ticket: str) -> str:
    return _PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


@audited("instance.console", target="instance")
def console_ticket_issue(*, user, instance: Instance) -> dict:
    """A ticket for the instance's consoles (members and admins; viewers may not)."""
    require_act(user, instance)
    if instance.state not in CONSOLE_STATES:
        raise Conflict(
            f"Instance {instance.name} is {instance.get_state_display().lower()}; "
            "its console is available while it runs."
        )
    require_host_online(instance, user)
    ticket = secrets.token_urlsafe(32)
    grant = {"user": user.pk, "instance": instance.pk}
    redis_client().set(
        _key(ticket), json.dumps(grant), ex=int(settings.CONSOLE_TICKET_SECONDS), nx=True
    )
    base = f"/ws/instances/{instance.uuid}"
    return {
        "ticket": ticket,
        "path": f"{base}/console/?ticket={ticket}",
        "serial_path": f"{base}/serial/?ticket={ticket}",
        "expires_in": int(settings.CONSOLE_TICKET_SECONDS),
    }


def console_ticket_redeem(ticket: str) -> TicketGrant | None:
    """Consume the ticket: its grant the first time within its life, None ever after."""
    if not ticket or len(ticket) > 128:
        return None
    raw = redis_client().getdel(_key(ticket))
    if raw is None:
        return None
    grant = json.loads(raw)
    return TicketGrant(user_id=int(grant["user"]), instance_id=int(grant["instance"]))


# ---- opening a console socket ---------------------------------------------------------------
#
# The socket's checks, in one place and in this order: a ticket that is valid now (redeemed,
# so never again), issued to this very session user, for this very instance (the path's
# uuid is only compared with the ticket's instance, never looked up on its own: nothing
# about other instances can be learnt here), and the user may still act on it now.


class ConsoleRefused(Exception):
    """The socket is refused; `code` is its close code (the reason is logged, never sent)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


CLOSE_SIGNED_OUT = 4401
CLOSE_REFUSED = 4403  # no (valid) ticket, not this user's or this instance's, no access now
CLOSE_UNAVAILABLE = 4404  # the instance (or its console) is not there any more


@dataclass(frozen=True)
class ConsoleTarget:
    """A console the socket may open: what it connects to, and what the log says."""

    instance_id: int
    instance_name: str
    project_id: int | None
    user_id: int
    username: str
    uri: str
    domain_name: str
    host_id: int
    host_name: str
    host_local: bool  # the host's libvirt is on this machine: its loopback is ours
    console_address: str


def console_open_check(*, user, ticket: str, instance_uuid) -> ConsoleTarget:
    """Redeem the ticket and check everything a console socket needs (ConsoleRefused)."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise ConsoleRefused(CLOSE_SIGNED_OUT, "not signed in")
    grant = console_ticket_redeem(ticket)
    if grant is None:
        raise ConsoleRefused(CLOSE_REFUSED, "no valid ticket (missing, expired or used)")
    if grant.user_id != user.pk:
        raise ConsoleRefused(CLOSE_REFUSED, f"ticket of user {grant.user_id}")
    instance = (
        Instance.objects.select_related("host", "project").filter(pk=grant.instance_id).first()
    )
    if instance is None or str(instance.uuid) != str(instance_uuid):
        raise ConsoleRefused(CLOSE_REFUSED, f"ticket for instance {grant.instance_id}")
    if not access.can_act(user, instance.project):
        raise ConsoleRefused(CLOSE_REFUSED, "may no longer act on the instance")
    host = instance.host
    if instance.state not in CONSOLE_STATES or host is None or not instance.domain_name:
        raise ConsoleRefused(CLOSE_UNAVAILABLE, f"instance is {instance.state}")
    if host.status != Host.Status.ONLINE:
        raise ConsoleRefused(CLOSE_UNAVAILABLE, f"host {host.name} is {host.status}")
    try:
        uri = connection_uri(host)
        server = host_uri(host).server
    except virt.VirtError as exc:
        raise ConsoleRefused(CLOSE_UNAVAILABLE, str(exc)) from exc
    return ConsoleTarget(
        instance_id=instance.pk,
        instance_name=instance.name,
        project_id=instance.project_id,
        user_id=user.pk,
        username=user.get_username(),
        uri=uri,
        domain_name=instance.domain_name,
        host_id=host.pk,
        host_name=host.name,
        host_local=server is None or _is_loopback(server),
        console_address=console_address(host),
    )


def console_still_allowed(target: ConsoleTarget, session_key: str | None = None) -> bool:
    """Checked again while a console stays open: the user active, still signed in with the
    session the socket opened with (not signed out, nor from before a password change),
    and still allowed to act on the instance, which still exists."""
    user = get_user_model().objects.filter(pk=target.user_id, is_active=True).first()
    if user is None or (session_key and not _session_is_users(session_key, user)):
        return False
    instance = Instance.objects.select_related("project").filter(pk=target.instance_id).first()
    return bool(instance and access.can_act(user, instance.project))


def _session_is_users(session_key: str, user) -> bool:
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key).load()
    return data.get(SESSION_KEY) == str(user.pk) and constant_time_compare(
        data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
    )


def _is_loopback(address: str) -> bool:
    name = address.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def vnc_address(target: ConsoleTarget) -> tuple[str, int]:
    """Where the panel connects for the instance's VNC server: the port and address from the
    live domain XML; the host's console address when the server listens on every address.
    A remote host's loopback is not reachable from here (and ours is not the host's)."""
    endpoint = virt_console.vnc_endpoint(target.uri, target.domain_name)
    address = endpoint.listen
    if address in virt_console.WILDCARD_ADDRESSES:
        address = target.console_address
    if _is_loopback(address) and not target.host_local:
        raise ConsoleRefused(
            CLOSE_UNAVAILABLE,
            f"the VNC server of {target.domain_name} listens on host {target.host_name}'s "
            "loopback only: set the host's console address to one the panel can reach",
        )
    return address.strip("[]"), endpoint.port


async def serial_open(target: ConsoleTarget) -> virt_console.SerialConsole:
    return await virt_console.open_serial(target.uri, target.domain_name)
