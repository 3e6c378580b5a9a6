"""How the panel reaches a host: its libvirt URI, its console endpoint, its key material.

Reads only. The SSH key file a qemu+ssh URI names is written when the key is set or
changed (hosts.services through keys.write_key), never here: asking for a host's URI costs
no file system write. A key file lost since (a new machine, a restored database) is
written again by `cloudpanel_setup` (`keys.restore_missing`).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from cloudpanel import virt

from . import keys
from .models import Host
from .uris import HostURI, parse_host_uri


def host_uri(host: Host) -> HostURI:
    """The host's stored URI, validated again: a row saved under older rules gets no pass."""
    try:
        return parse_host_uri(host.uri)
    except ValidationError as exc:
        raise virt.VirtError(
            f"The URI stored for host {host.name} is not accepted any more: "
            f"{' '.join(exc.messages)} Edit the host's URI."
        ) from exc


def connection_uri(host: Host) -> str:
    """The URI the virt layer opens: the rebuilt, validated one, plus the panel's own
    parameters (the key file of an SSH host). Raises virt.VirtError if the stored URI is
    no longer valid."""
    parsed = host_uri(host)
    if parsed.transport != "ssh" or not host.has_ssh_key:
        return parsed.uri
    return parsed.format((("keyfile", str(keys.key_path(host.pk))), ("no_tty", "1")))


def pooled_uri(host: Host) -> str | None:
    """The URI the connection pool may hold a connection to the host under, or None."""
    try:
        return connection_uri(host)
    except virt.VirtError:
        return None


def console_address(host: Host) -> str:
    """Where the host's guests' VNC servers listen, and where the panel reaches them. Set
    when the host is registered (its URI's host name, see uris.default_console_address);
    loopback when it was cleared: nothing outside the host may then reach a console."""
    return host.console_address or "127.0.0.1"
