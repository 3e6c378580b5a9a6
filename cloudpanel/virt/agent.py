"""The QEMU guest agent, through libvirt: ping, guest info, addresses, password, shutdown,
filesystem freeze and thaw.

Every call is bounded: the agent's answer is awaited at most AGENT_TIMEOUT seconds (the ping
PING_TIMEOUT), so a guest without an agent costs a short wait, never a hung request. When no
agent answers, for whatever reason, the call raises AgentUnavailable with a reason a person
can read; anything else the host says stays the pool's usual VirtError.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Callable
from typing import TypeVar

import libvirt
import libvirt_qemu

from .errors import AgentUnavailable, VirtError
from .pool import get_pool
from .types import GuestFilesystem, GuestInfo, GuestInterface

T = TypeVar("T")

PING_TIMEOUT = 2  # seconds: an agent that is there answers a ping at once
AGENT_TIMEOUT = 10  # seconds for any other agent command

# Why no agent answers, by libvirt error code; the message shown with each.
_ABSENT = {
    # qemu: the domain has no agent channel ("QEMU guest agent is not configured")
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED: "the instance has no guest agent channel",
    # qemu: the channel exists but no agent is connected to it, or it did not answer in time
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE: "no guest agent is running in the guest, or it did "
    "not answer in time",
    libvirt.VIR_ERR_AGENT_UNSYNCED: "the guest agent did not answer in time",
    # a driver or hypervisor without the feature (the test:/// driver, an old QEMU)
    libvirt.VIR_ERR_NO_SUPPORT: "the host does not support the guest agent",
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: "the host does not support this guest agent command",
}


def _unavailable(exc: libvirt.libvirtError) -> AgentUnavailable | None:
    """The AgentUnavailable that `exc` means, or None when it means something else."""
    code = exc.get_error_code()
    message = exc.get_error_message() or ""
    reason = _ABSENT.get(code)
    if reason is None and code == libvirt.VIR_ERR_INVALID_ARG and "unsupported flags" in message:
        # A driver that does not know the agent's flag (e.g. SHUTDOWN_GUEST_AGENT).
        reason = "the host does not support the guest agent"
    if reason is None:
        return None
    error = AgentUnavailable(f"Guest agent unavailable: {reason}.")
    error.detail = message  # libvirt's own words, for logs and admins
    return error


def _active(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    dom = conn.lookupByName(name)
    if not dom.isActive():
        raise AgentUnavailable("Guest agent unavailable: the instance is not running.")
    return dom


def _bound(dom: libvirt.virDomain, seconds: int) -> None:
    """Make libvirt wait at most `seconds` for this domain's agent (where it can)."""
    try:
        dom.agentSetResponseTimeout(seconds, 0)
    except libvirt.libvirtError:
        pass  # drivers without agent support: the call itself then says so


def _agent_call(uri: str, name: str, op: Callable[[libvirt.virDomain], T]) -> T:
    """Run op(domain) on the running domain; 'no agent' errors become AgentUnavailable."""
    try:
        return get_pool().call(uri, lambda conn: op(_active(conn, name)))
    except AgentUnavailable:
        raise
    except VirtError as exc:
        cause = exc.__cause__
        if isinstance(cause, libvirt.libvirtError):
            unavailable = _unavailable(cause)
            if unavailable is not None:
                raise unavailable from cause
        raise


def agent_ping(uri: str, name: str, timeout: int = PING_TIMEOUT) -> None:
    """Return when the guest agent answers a guest-ping; AgentUnavailable when it does not."""

    def op(dom: libvirt.virDomain) -> None:
        libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-ping"}), timeout, 0)

    _agent_call(uri, name, op)


def agent_command(
    uri: str, name: str, execute: str, arguments: dict | None = None, timeout: int = AGENT_TIMEOUT
) -> object:
    """Run one guest agent command (QMP-style: guest-exec, guest-file-read...) and return
    its "return" value. For tests and tools; the panel's own features have functions here."""
    command: dict = {"execute": execute}
    if arguments:
        command["arguments"] = arguments

    def op(dom: libvirt.virDomain) -> object:
        answer = libvirt_qemu.qemuAgentCommand(dom, json.dumps(command), timeout, 0)
        return json.loads(answer).get("return") if answer else None

    return _agent_call(uri, name, op)


def guest_read_file(uri: str, name: str, path: str, limit: int = 1024 * 1024) -> bytes:
    """The first `limit` bytes of a file inside the guest, through the agent."""
    handle = agent_command(uri, name, "guest-file-open", {"path": path, "mode": "r"})
    data = b""
    try:
        while len(data) < limit:
            chunk = agent_command(
                uri, name, "guest-file-read", {"handle": handle, "count": min(65536, limit)}
            )
            data += base64.b64decode(chunk.get("buf-b64", ""))
            if chunk.get("eof") or not chunk.get("count"):
                break
    finally:
        agent_command(uri, name, "guest-file-close", {"handle": handle})
    return data[:limit]


def agent_answers(uri: str, name: str, timeout: int = PING_TIMEOUT) -> bool:
    """Does the guest agent answer a ping right now?"""
    try:
        agent_ping(uri, name, timeout)
    except AgentUnavailable:
        return False
    return True


_GUEST_INFO_TYPES = (
    libvirt.VIR_DOMAIN_GUEST_INFO_OS
    | libvirt.VIR_DOMAIN_GUEST_INFO_HOSTNAME
    | libvirt.VIR_DOMAIN_GUEST_INFO_TIMEZONE
    | libvirt.VIR_DOMAIN_GUEST_INFO_FILESYSTEM
)


def _int_or_none(value) -> int | None:
    return int(value) if value is not None else None


def parse_guest_info(params: dict) -> GuestInfo:
    """virDomainGetGuestInfo's typed parameters ("os.name", "fs.0.used-bytes", ...)."""
    filesystems = []
    for i in range(int(params.get("fs.count", 0))):
        prefix = f"fs.{i}."
        filesystems.append(
            GuestFilesystem(
                mountpoint=str(params.get(prefix + "mountpoint", "")),
                name=str(params.get(prefix + "name", "")),
                type=str(params.get(prefix + "fstype", "")),
                used_bytes=_int_or_none(params.get(prefix + "used-bytes")),
                total_bytes=_int_or_none(params.get(prefix + "total-bytes")),
            )
        )
    return GuestInfo(
        os_name=params.get("os.pretty-name") or params.get("os.name"),
        os_version=params.get("os.version"),
        os_id=params.get("os.id"),
        kernel_release=params.get("os.kernel-release"),
        hostname=params.get("hostname"),
        timezone=params.get("timezone.name"),
        filesystems=filesystems,
    )


def guest_info(uri: str, name: str) -> GuestInfo:
    """The guest's OS, hostname, time zone and filesystems, from its agent."""

    def op(dom: libvirt.virDomain) -> GuestInfo:
        _bound(dom, AGENT_TIMEOUT)
        return parse_guest_info(dom.guestInfo(_GUEST_INFO_TYPES, 0) or {})

    return _agent_call(uri, name, op)


def _reachable(address: str) -> bool:
    """Leave out loopback and IPv6 link-local addresses: nobody reaches the guest on them."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return not (ip.is_loopback or (ip.version == 6 and ip.is_link_local))


def guest_interfaces(uri: str, name: str, timeout: int = AGENT_TIMEOUT) -> list[GuestInterface]:
    """The guest's interfaces and their addresses as its agent reports them (no loopback)."""

    def op(dom: libvirt.virDomain) -> list[GuestInterface]:
        _bound(dom, timeout)
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
        result = []
        for ifname, iface in sorted((ifaces or {}).items()):
            addrs = [
                f"{a['addr']}/{a['prefix']}" if a.get("prefix") is not None else a["addr"]
                for a in (iface.get("addrs") or [])
                if a.get("addr") and _reachable(a["addr"])
            ]
            if addrs:
                result.append(GuestInterface(name=ifname, mac=iface.get("hwaddr"), addresses=addrs))
        return result

    return _agent_call(uri, name, op)


def agent_addresses(uri: str, name: str, timeout: int = AGENT_TIMEOUT) -> list[str]:
    """The guest's own IP addresses (no prefix, no loopback), from its agent."""
    interfaces = guest_interfaces(uri, name, timeout)
    return [a.split("/", 1)[0] for iface in interfaces for a in iface.addresses]


def set_user_password(uri: str, name: str, user: str, password: str) -> None:
    """Set `user`'s password inside the guest (the agent's guest-set-user-password).

    The password goes to libvirt and nowhere else: it is never logged nor put in an error.
    """

    def op(dom: libvirt.virDomain) -> None:
        _bound(dom, AGENT_TIMEOUT)
        dom.setUserPassword(user, password, 0)

    _agent_call(uri, name, op)


def agent_shutdown(uri: str, name: str) -> None:
    """Ask the guest agent to power the guest off (for guests that ignore ACPI)."""

    def op(dom: libvirt.virDomain) -> None:
        _bound(dom, AGENT_TIMEOUT)
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)

    _agent_call(uri, name, op)


def fs_freeze(uri: str, name: str) -> int:
    """Freeze the guest's filesystems (flushed, writes held); returns how many."""

    def op(dom: libvirt.virDomain) -> int:
        _bound(dom, AGENT_TIMEOUT)
        return int(dom.fsFreeze(None, 0))

    return _agent_call(uri, name, op)


def fs_thaw(uri: str, name: str) -> int:
    """Thaw the guest's filesystems; returns how many were thawed (0 if none was frozen)."""

    def op(dom: libvirt.virDomain) -> int:
        _bound(dom, AGENT_TIMEOUT)
        return int(dom.fsThaw(None, 0))

    return _agent_call(uri, name, op)


__all__ = [
    "AGENT_TIMEOUT",
    "PING_TIMEOUT",
    "agent_addresses",
    "agent_answers",
    "agent_command",
    "agent_ping",
    "agent_shutdown",
    "fs_freeze",
    "fs_thaw",
    "guest_info",
    "guest_interfaces",
    "guest_read_file",
    "parse_guest_info",
    "set_user_password",
]
