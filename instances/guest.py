"""What the panel reads from and does through an instance's QEMU guest agent.

A guest without an agent (no OS yet, no qemu-guest-agent, still booting) is an ordinary
state: reads answer agent "unavailable" with the reason, writes refuse with a Conflict
(409), and nothing here ever turns it into an error page.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from cloudpanel.audit.decorators import audited
from cloudpanel.errors import Conflict, InvalidInput, NotFound
from cloudpanel.projects import access
from cloudpanel.virt import AgentUnavailable, HostUnreachable, VirtError, agent
from hosts.connection import connection_uri
from hosts.models import Host

from .models import Instance
from .rules import require_act, require_host_online

log = logging.getLogger(__name__)

ANSWERS = "answers"
UNAVAILABLE = "unavailable"

USERNAME_MAX = 32  # useradd's limit on Linux
PASSWORD_MAX = 256


@dataclass(frozen=True)
class GuestView:
    """The guest as its agent describes it; only `agent` and `reason` when it does not."""

    agent: str  # ANSWERS or UNAVAILABLE
    reason: str = ""  # why it is unavailable, for the person looking
    os_name: str | None = None
    os_version: str | None = None
    kernel_release: str | None = None
    hostname: str | None = None
    timezone: str | None = None
    filesystems: list[dict] = field(default_factory=list)
    interfaces: list[dict] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)

    @property
    def answers(self) -> bool:
        return self.agent == ANSWERS

    def as_dict(self) -> dict:
        return asdict(self)


def _unavailable(reason: str) -> GuestView:
    return GuestView(agent=UNAVAILABLE, reason=reason)


def _host_problem(user, instance: Instance, exc: VirtError) -> str:
    # The host's name and libvirt's words are for admins only (as everywhere else).
    if access.sees_infrastructure(user):
        return f"Host {instance.host.name} could not be asked: {exc}"
    return "The instance's host could not be asked right now; try again later."


def instance_guest_info(*, user, instance: Instance) -> GuestView:
    """The guest's agent status, OS, hostname, filesystems and addresses (project viewers)."""
    if not access.can_view(user, instance.project):
        raise NotFound(f"Instance {instance.pk} not found.")
    host = instance.host
    if host is None or not instance.domain_name:
        return _unavailable("The instance has no virtual machine yet.")
    if host.status != Host.Status.ONLINE:
        return _unavailable("The instance's host is unreachable right now.")
    try:
        uri = connection_uri(host)
        # A ping first: an agent that hangs costs its short timeout, not the longer one.
        agent.agent_ping(uri, instance.domain_name)
        info = agent.guest_info(uri, instance.domain_name)
        interfaces = agent.guest_interfaces(uri, instance.domain_name)
    except AgentUnavailable as exc:
        return _unavailable(str(exc))
    except NotFound:
        return _unavailable("The virtual machine is not found on its host.")
    except VirtError as exc:
        log.info("guest info of %s: %s", instance, exc)
        return _unavailable(_host_problem(user, instance, exc))
    addresses = [a.split("/", 1)[0] for i in interfaces for a in i.addresses]
    if addresses and addresses != instance.ip_addresses:
        # The agent's view is the freshest: the instance's addresses follow it (as a state
        # refresh would), without waiting for the next job.
        Instance.objects.filter(pk=instance.pk).update(ip_addresses=addresses)
        instance.ip_addresses = addresses
    return GuestView(
        agent=ANSWERS,
        os_name=info.os_name,
        os_version=info.os_version,
        kernel_release=info.kernel_release,
        hostname=info.hostname,
        timezone=info.timezone,
        filesystems=[asdict(fs) for fs in info.filesystems],
        interfaces=[asdict(iface) for iface in interfaces],
        ip_addresses=addresses,
    )


def _validate_credentials(username: str, password: str) -> str:
    username = (username or "").strip()
    problems: dict[str, list[str]] = {}
    if not username:
        problems["user"] = ["A user name is required."]
    elif len(username) > USERNAME_MAX or any(c.isspace() or c in ":/\\" for c in username):
        problems["user"] = [f"At most {USERNAME_MAX} characters, no spaces, ':' or slashes."]
    if not password:
        problems["password"] = ["A password is required."]
    elif len(password) > PASSWORD_MAX:
        problems["password"] = [f"At most {PASSWORD_MAX} characters."]
    elif any(ord(c) < 32 for c in password):
        problems["password"] = ["No control characters (such as newlines)."]
    if problems:
        raise InvalidInput(problems)
    return username


@audited("instance.set_password", target="instance")
def instance_set_password(*, user, instance: Instance, username: str, password: str) -> None:
    """Set a guest user's password through the agent, at once (project members).

    Synchronous and bounded by the agent timeout: the password must not wait in a job row.
    It is never logged, and no error repeats it.
    """
    require_act(user, instance)
    username = _validate_credentials(username, password)
    require_host_online(instance, user)
    if not instance.domain_name:
        raise Conflict(f"Instance {instance.name} has no virtual machine yet.")
    uri = connection_uri(instance.host)
    try:
        agent.set_user_password(uri, instance.domain_name, username, password)
    except (AgentUnavailable, HostUnreachable, NotFound):
        raise
    except VirtError as exc:
        # The agent answered with an error (e.g. no such user): the guest's words.
        log.info("setting a password on %s failed: %s", instance, exc)
        raise Conflict(f"The guest could not set the password of {username}: {exc}") from exc
    log.info("password of guest user %s set on %s by %s", username, instance, user)
