"""libvirt connection URIs: parsed exactly as libvirt parses them, validated, rebuilt.

A URI names more than a host: libvirt's remote driver reads query parameters that run
programs (``command``, ``netcat``, ``proxy``) or read local files (``keyfile``, ``pkipath``,
``known_hosts``, ``socket``). So a URI is never checked with a different parser than the
one libvirt uses, and never stored or opened as the caller wrote it:

1. ``libvirt_parse`` reads a string as libvirt does: libxml2's RFC 3986 ``xmlParseURI``
   (components percent-decoded, the query kept raw), then libvirt's ``virURIParseParams``
   (split on ``&``, or on ``;`` when no ``&`` is left, each name and value percent-decoded;
   libvirt compares names case-insensitively).
2. ``parse_host_uri`` validates those fields against per-transport allow-lists.
3. ``HostURI.uri`` rebuilds the URI from the validated fields, each value strictly
   percent-encoded, and checks that parsing it back gives the same fields.

(Over 400 lines on purpose: the parser, the allow-lists and the rebuild must be read
together, since a difference between any two of them is a hole.)
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError

MAX_LENGTH = 500
DEFAULT_SOCKET_DIRS = ("/run/libvirt", "/var/run/libvirt")

SCHEMES = {
    "qemu": "local",
    "qemu+unix": "unix",
    "qemu+ssh": "ssh",
    "qemu+libssh": "ssh",
    "qemu+libssh2": "ssh",
    "qemu+tls": "tls",
    "qemu+tcp": "tcp",
    "test": "test",
}
REMOTE = {"ssh", "tls", "tcp"}
# What a request may set, per transport, with the values each parameter may take (None: any
# value, checked by its own rule). Everything else (command, netcat, proxy, keyfile, pkipath,
# known_hosts, known_hosts_verify, sshauth, auth, authfile, name, tls_priority, ...) is
# refused: those the panel needs (keyfile, no_tty) it adds itself in connection_uri.
ALLOWED_PARAMS: dict[str, dict[str, frozenset[str] | None]] = {
    "local": {},
    "unix": {"socket": None},
    "ssh": {"no_verify": frozenset({"0", "1"}), "mode": frozenset({"auto", "legacy", "direct"})},
    "tls": {"no_verify": frozenset({"0", "1"})},
    "tcp": {},
    "test": {},
}
PANEL_PARAMS = {"keyfile", "no_tty"}
# Every parameter libvirt's remote driver reads (src/remote/remote_driver.c, doRemoteOpen).
REMOTE_DRIVER_PARAMS = {
    "name", "command", "socket", "auth", "sshauth", "netcat", "keyfile", "pkipath",
    "known_hosts", "known_hosts_verify", "tls_priority", "mode", "proxy", "no_sanity",
    "no_verify", "no_tty", "authfile",
}  # fmt: skip
# The test driver ignores parameters; tests use them to tell several test hosts apart.
_TEST_VALUE = re.compile(r"[A-Za-z0-9._-]{1,64}")
QEMU_PATHS = ("/system", "/session")

USAGE = (
    "Use qemu:///system, qemu+ssh://user@host/system, qemu+tls://host/system, "
    "qemu+tcp://host:port/system, qemu+unix:///system?socket=PATH or test:///default."
)

# ---- 1. libvirt's parser -------------------------------------------------------------------

# RFC 3986 character classes, as libxml2 2.9 implements them for xmlParseURI.
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_URI_RE = re.compile(
    rf"""
    (?P<scheme>[A-Za-z][A-Za-z0-9+\-.]*):
    (?:
        //(?:(?P<userinfo>(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*)@)?
        (?P<host>\[[^\]]*\]|(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*)
        (?::(?P<port>[0-9]+))?
        (?P<apath>(?:/{_PCHAR}*)*)
      | (?P<path>/?(?:{_PCHAR}+(?:/{_PCHAR}*)*)?)
    )
    (?:\?(?P<query>(?:{_PCHAR}|[/?])*))?
    (?:\#(?P<fragment>(?:{_PCHAR}|[/?])*))?
    """,
    re.VERBOSE,
)
_HEX = re.compile(r"%([0-9A-Fa-f]{2})")


def _unescape(raw: str) -> str:
    """xmlURIUnescapeString: %XX becomes that byte; anything else stays as it is.

    Bytes map one to one (latin-1), and a decoded NUL ends the string as it ends libvirt's
    C string; the validator refuses escapes of anything but printable ASCII anyway.
    """
    return _HEX.sub(lambda m: chr(int(m.group(1), 16)), raw).split("\0", 1)[0]


def _split_params(query: str | None) -> list[tuple[str, str]]:
    """virURIParseParams, branch by branch (src/util/viruri.c).

    The next separator is the first '&' left in the string or, only when none is left, the
    first ';'. Quirk kept: for 'name=' libvirt unescapes the name with length 0, which
    libxml2 reads as "up to the end of the string", so '=' alone names everything after it.
    """
    params: list[tuple[str, str]] = []
    q = query or ""
    pos = 0
    while pos < len(q):
        end = q.find("&", pos)
        if end < 0:
            end = q.find(";", pos)
        if end < 0:
            end = len(q)
        eq = q.find("=", pos)
        if eq >= end:
            eq = -1
        if end == pos:
            pass  # empty section ('&&')
        elif eq < 0:
            params.append((_unescape(q[pos:end]), ""))
        elif eq + 1 == end:
            params.append((_unescape(q[pos:eq] or q[pos:]), ""))
        elif eq == pos:
            pass  # '=value' is ignored
        else:
            params.append((_unescape(q[pos:eq]), _unescape(q[eq + 1 : end])))
        pos = end + 1
    return params


@dataclass(frozen=True)
class ParsedURI:
    """What libvirt's virURIParse gives for a string (None where libvirt has NULL)."""

    scheme: str
    user: str | None
    server: str | None
    port: int
    path: str | None
    query: str | None
    fragment: str | None
    params: tuple[tuple[str, str], ...]
    authority: str | None  # the raw text between '//' and the path (None without '//')


def libvirt_parse(uri: str) -> ParsedURI | None:
    """The fields libvirt would act on, or None where libvirt fails to parse the string."""
    uri = uri.split("\0", 1)[0]  # libvirt gets a C string: it stops at a NUL
    m = _URI_RE.fullmatch(uri)
    if m is None:
        return None
    g = m.groupdict()
    authority = uri[m.end("scheme") + 3 : m.start("apath")] if g["apath"] is not None else None
    server = _unescape(g["host"]) if g["host"] else None
    if server and server.startswith("[") and server.endswith("]") and ":" in server:
        server = server[1:-1]  # virStringStripIPv6Brackets
    user = None
    if g["userinfo"] is not None:
        # libxml2 2.9 unescapes an empty userinfo with length 0, which means "to the end".
        user = _unescape(g["userinfo"] or uri[m.start("userinfo") :])
    path = g["apath"] if authority is not None else g["path"]
    return ParsedURI(
        scheme=g["scheme"],
        user=user,
        server=server,
        port=int(g["port"]) if g["port"] and server else 0,
        path=_unescape(path) if path else None,
        query=g["query"],
        fragment=_unescape(g["fragment"]) if g["fragment"] is not None else None,
        params=tuple(_split_params(g["query"])),
        authority=authority,
    )


# ---- 2. validation -------------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_IPV4 = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
# The raw authority of a remote URI: no percent-encoding, no password, nothing else. A host
# name's last label starts with a letter, so '0x7f.1' or '2130706433' are not read as IPv4.
_AUTHORITY = re.compile(
    rf"""
    (?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]{{0,31}})@)?
    (?P<host>(?:{_LABEL}\.)*[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?|{_IPV4}|\[[0-9A-Fa-f:.]+\])
    (?::(?P<port>[0-9]{{1,5}}))?
    """,
    re.VERBOSE,
)
_PARAM_NAME = re.compile(r"[a-z_]{1,32}")
_SANE = re.compile(r"[\x21-\x7e]*")  # printable ASCII, no space
_SOCKET_PATH = re.compile(r"/[A-Za-z0-9._+~/-]{1,200}")


@dataclass(frozen=True)
class HostURI:
    """A validated libvirt URI: only these fields are ever stored or opened."""

    scheme: str
    user: str | None = None
    server: str | None = None
    port: int = 0
    path: str = "/system"
    params: tuple[tuple[str, str], ...] = field(default=())

    @property
    def transport(self) -> str:
        return SCHEMES[self.scheme]

    @property
    def uri(self) -> str:
        """The canonical form, as stored in Host.uri."""
        return self.format()

    def format(self, extra: tuple[tuple[str, str], ...] = ()) -> str:
        """Rebuild the URI; `extra` are parameters the panel itself adds (keyfile, no_tty)."""
        authority = f"{self.user}@" if self.user else ""
        if self.server:
            authority += f"[{self.server}]" if ":" in self.server else self.server
        if self.port:
            authority += f":{self.port}"
        query = "&".join(f"{name}={_quote(value)}" for name, value in (*self.params, *extra))
        return f"{self.scheme}://{authority}{self.path}" + (f"?{query}" if query else "")

    def fields(self) -> tuple:
        return (self.scheme, self.user, self.server, self.port, self.path, self.params)


def fields_of(parsed: ParsedURI) -> tuple:
    """What libvirt read, in the shape of HostURI.fields(), for comparisons."""
    params = tuple((name.lower(), value) for name, value in parsed.params)
    return (parsed.scheme, parsed.user, parsed.server, parsed.port, parsed.path, params)


_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")


def _quote(value: str) -> str:
    # Only unreserved characters and '/' stay as they are: ';', '&', '=', '%', '?', '#'
    # and everything else are encoded, so nothing can be re-split or read differently.
    return "".join(ch if ch in _KEEP else f"%{ord(ch):02X}" for ch in value)


def _socket_dirs() -> list[str]:
    dirs = getattr(settings, "LIBVIRT_SOCKET_DIRS", DEFAULT_SOCKET_DIRS)
    return list(dict.fromkeys(os.path.realpath(d) for d in dirs if d))


def _check_socket(path: str) -> str:
    """The socket's real path, if it lies under an allowed directory."""
    if not _SOCKET_PATH.fullmatch(path):
        raise ValidationError(
            "The socket parameter must be an absolute path of letters, digits and '._+~-/'."
        )
    real = os.path.realpath(path)
    for directory in _socket_dirs():
        if real != directory and os.path.commonpath([real, directory]) == directory:
            return real
    allowed = ", ".join(_socket_dirs()) or "none"
    raise ValidationError(
        f"The socket {path} is not under an allowed directory ({allowed}); "
        "see the LIBVIRT_SOCKET_DIRS setting."
    )


def _check_server(raw: str) -> str:
    if raw.startswith("["):
        try:
            return ipaddress.IPv6Address(raw[1:-1]).compressed
        except ValueError as exc:
            raise ValidationError("The host is not a valid IPv6 address.") from exc
    if re.fullmatch(_IPV4, raw):
        try:
            return str(ipaddress.IPv4Address(raw))
        except ValueError as exc:
            raise ValidationError("The host is not a valid IPv4 address.") from exc
    if len(raw) > 253:
        raise ValidationError("The host name is too long.")
    return raw.lower()


def _check_authority(parsed: ParsedURI, transport: str) -> tuple[str | None, str | None, int]:
    """(user, server, port) of a remote URI, from its raw authority."""
    if (parsed.user or "").startswith("-") or (parsed.server or "").startswith("-"):
        raise ValidationError("The user and host may not start with '-' (ssh reads an option).")
    m = _AUTHORITY.fullmatch(parsed.authority or "")
    if m is None:
        if not parsed.server:
            raise ValidationError(
                f"A qemu+{transport} URI needs a host: qemu+{transport}://host/system."
            )
        raise ValidationError(
            "Write the host part as [user@]host[:port]: a user of letters, digits, '_', '.' "
            "or '-' (not first), a host name, an IPv4 address or an IPv6 address in brackets; "
            "no password, no percent-encoding."
        )
    port = int(m["port"] or 0)
    if port > 65535:
        raise ValidationError("The port in the URI is not a number between 1 and 65535.")
    return m["user"], _check_server(m["host"]), port


def _check_params(parsed: ParsedURI, transport: str) -> tuple[tuple[str, str], ...]:
    if parsed.query is None:
        return ()
    # libvirt splits on '&', and on ';' only where no '&' is left: refuse any query that a
    # split on both would read differently, so no separator can hide inside a value.
    sections = re.split(r"[&;]", parsed.query)
    naive = [tuple(_unescape(p) for p in s.split("=", 1)) for s in sections]
    if any(len(p) != 2 or not p[0] for p in naive) or tuple(naive) != parsed.params:
        raise ValidationError(
            "Write URI parameters as name=value separated by '&', with ';', '&' and '=' "
            "inside a value percent-encoded."
        )
    allowed = ALLOWED_PARAMS[transport]
    seen: dict[str, str] = {}
    for name, value in parsed.params:
        key = name.lower()  # libvirt compares parameter names case-insensitively
        if not _PARAM_NAME.fullmatch(key):
            raise ValidationError(f"Invalid URI parameter name {name!r}.")
        if key in seen:
            raise ValidationError(f"The URI parameter {key} is given more than once.")
        if transport == "test" and key not in REMOTE_DRIVER_PARAMS:
            if not _TEST_VALUE.fullmatch(value):
                raise ValidationError("A test URI parameter's value is letters, digits, '._-'.")
            seen[key] = value
            continue
        if key not in allowed:
            if key in PANEL_PARAMS:
                raise ValidationError(f"The URI parameter {key} is set by the panel itself.")
            what = ", ".join(sorted(allowed)) or "none"
            raise ValidationError(
                f"The URI parameter {key} is not allowed here (allowed for this transport: {what})."
            )
        if not value or not _SANE.fullmatch(value):
            raise ValidationError(
                f"The value of {key} is empty or has spaces, control or non-ASCII characters."
            )
        choices = allowed[key]
        if choices is not None and value not in choices:
            raise ValidationError(f"{key} must be one of: {', '.join(sorted(choices))}.")
        seen[key] = _check_socket(value) if key == "socket" else value
    return tuple(seen.items())


def parse_host_uri(uri: str) -> HostURI:
    """Validate `uri` as libvirt would read it; raise ValidationError with a clear message."""
    if not isinstance(uri, str) or not uri:
        raise ValidationError(f"Enter a libvirt URI. {USAGE}")
    if len(uri) > MAX_LENGTH:
        raise ValidationError(f"The URI is longer than {MAX_LENGTH} characters.")
    if not _SANE.fullmatch(uri) or "\\" in uri:
        raise ValidationError("The URI has spaces, backslashes, control or non-ASCII characters.")
    if re.search(r"%(?![2-7][0-9A-Fa-f])|%7[Ff]", uri):
        raise ValidationError(
            "The URI's percent-encoding is broken or decodes to control or non-ASCII characters."
        )
    parsed = libvirt_parse(uri)
    if parsed is None:
        raise ValidationError(f"This is not a URI libvirt can read. {USAGE}")
    transport = SCHEMES.get(parsed.scheme)
    if transport is None:
        raise ValidationError(f"Unsupported URI scheme {parsed.scheme!r}. {USAGE}")
    if parsed.authority is None:
        raise ValidationError(f"Write the URI with '//' after the scheme. {USAGE}")
    if parsed.fragment is not None:
        raise ValidationError("A libvirt URI has no '#fragment'.")
    if transport == "test":
        if parsed.authority or parsed.path != "/default":
            raise ValidationError("A test driver URI is test:///default.")
        params = _check_params(parsed, transport)
        return _rebuilt(HostURI(scheme="test", path="/default", params=params))
    if parsed.path not in QEMU_PATHS:
        raise ValidationError("The path of a QEMU URI must be /system or /session.")
    user, server, port = None, None, 0
    if transport in REMOTE:
        user, server, port = _check_authority(parsed, transport)
    elif parsed.authority:
        raise ValidationError("A local or unix-socket URI has no host part: qemu:///system.")
    params = _check_params(parsed, transport)
    if transport == "unix" and not params:
        raise ValidationError("A qemu+unix URI needs ?socket=PATH; or use qemu:///system.")
    return _rebuilt(HostURI(parsed.scheme, user, server, port, parsed.path, params))


def _rebuilt(host_uri: HostURI) -> HostURI:
    """A safety net: refuse if libvirt would read the rebuilt URI other than as validated."""
    text = host_uri.uri
    again = libvirt_parse(text)
    if len(text) > MAX_LENGTH or again is None or fields_of(again) != host_uri.fields():
        raise ValidationError("This URI cannot be stored safely; write it more simply.")
    return host_uri


# ---- what the rest of the panel uses -------------------------------------------------------


def validate_uri(uri: str) -> None:
    """Model/form validator."""
    parse_host_uri(uri)


def canonical_uri(uri: str) -> str:
    """The rebuilt URI that is stored and opened instead of the string as written."""
    return parse_host_uri(uri).uri


def transport_of(uri: str) -> str:
    """'local', 'ssh', 'tls', 'tcp', 'unix' or 'test' ('' for a scheme we do not know)."""
    return SCHEMES.get(uri.partition(":")[0], "")


def default_console_address(uri: str) -> str:
    """Where the host's VNC servers are reached: its own name for remote hosts."""
    try:
        server = parse_host_uri(uri).server
    except ValidationError:
        server = None
    return server or "127.0.0.1"
