"""Console tickets: who may open an instance's console, decided once, redeemed once.

A ticket is a random token whose hash is a Redis key holding the user, the instance and the
kind of console; it expires after CONSOLE_TICKET_SECONDS and is consumed (GETDEL) by the
first socket that presents it, so it is single use even across web processes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from django.conf import settings

from cloudpanel.errors import Conflict
from cloudpanel.live.metrics import client as redis_client

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
