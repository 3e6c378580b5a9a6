"""Validation of libvirt connection URIs, and the transport each one uses."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import ValidationError

QEMU_TRANSPORTS = {"", "ssh", "libssh", "libssh2", "tls", "tcp", "unix"}
ALLOWED_QUERY = {"socket", "keyfile", "no_verify", "no_tty", "known_hosts", "pkipath", "mode"}


def transport_of(uri: str) -> str:
    """'local', 'ssh', 'tls', 'tcp', 'unix' or 'test'."""
    scheme = urlsplit(uri).scheme
    if scheme == "test":
        return "test"
    _, _, transport = scheme.partition("+")
    if transport.startswith("libssh"):
        return "ssh"
    return transport or "local"


def validate_uri(uri: str) -> None:
    if not uri or any(ch.isspace() for ch in uri) or len(uri) > 500:
        raise ValidationError("Enter a libvirt URI such as qemu:///system, without spaces.")
    parts = urlsplit(uri)
    driver, _, transport = parts.scheme.partition("+")
    if driver == "test":
        if transport or not parts.path:
            raise ValidationError("A test driver URI looks like test:///default.")
        return
    if driver != "qemu" or transport not in QEMU_TRANSPORTS:
        raise ValidationError(
            "Unsupported URI scheme: use qemu:///system, qemu+ssh://user@host/system, "
            "qemu+tls://host/system, qemu+tcp://host:port/system, "
            "qemu+unix:///system?socket=PATH or test:///default."
        )
    if parts.path not in ("/system", "/session"):
        raise ValidationError("The path of a QEMU URI must be /system or /session.")
    needs_host = transport in ("ssh", "libssh", "libssh2", "tls", "tcp")
    if needs_host and not parts.hostname:
        raise ValidationError(f"A qemu+{transport} URI needs a host name.")
    if transport in ("", "unix") and parts.netloc:
        raise ValidationError("A local or unix-socket URI has no host part (three slashes).")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValidationError("The port in the URI is not a number between 0 and 65535.") from exc
    unknown = set(parse_qs(parts.query)) - ALLOWED_QUERY
    if unknown:
        raise ValidationError(f"Unknown URI parameter(s): {', '.join(sorted(unknown))}.")
    if transport == "unix" and "socket" in parse_qs(parts.query):
        socket_path = parse_qs(parts.query)["socket"][0]
        if not socket_path.startswith("/"):
            raise ValidationError("The socket parameter must be an absolute path.")


def default_console_address(uri: str) -> str:
    """Where the host's VNC servers are reached: its own name for remote hosts."""
    host = urlsplit(uri).hostname
    return host or "127.0.0.1"
