"""Fetching an image from an http(s) URL without letting a tenant reach the panel's networks.

One strict parser decides both the address check and the connection: a URL is parsed once
into a Target (scheme, host, port, path), the host is resolved once, every address is
checked, and the socket is opened to one of those checked addresses. The request line and
Host header are written from the Target's fields, so no other parser (urllib3, requests,
http.client) ever reads the original string, and DNS rebinding can't switch the address
between the check and the connection. For https the certificate is verified against the
URL's host name (also sent as SNI).

Everyone's URLs go through the strict parser: no user:pass@, no backslashes, no whitespace,
control or non-ASCII characters, no fragments, IPv4 addresses only as four decimal numbers.
Tenants (public_only) may reach public addresses only and follow no redirects; admins may
reach anything and follow a few redirects, each hop parsed again the same way.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

CONNECT_TIMEOUT = 10.0  # seconds to open the connection
READ_TIMEOUT = 60.0  # seconds between two reads
MAX_REDIRECTS = 3  # for admins; tenants follow none
MAX_URL_LENGTH = 1000
REDIRECTS = {301, 302, 303, 307, 308}
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?]*)(?P<rest>.*)")
_AUTHORITY = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?"
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")  # what makes inet_aton read a name as IPv4
_PATH = re.compile(r"/(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*")


class DownloadError(Exception):
    """The download could not be made; the message says why, for a person."""


class RefusedURL(DownloadError):
    """The URL is malformed or leads somewhere it may not."""


@dataclass(frozen=True)
class Target:
    scheme: str  # http or https
    host: str  # a lowercase DNS name, or an IP address in canonical form
    port: int
    path: str  # path and query, exactly as sent on the request line
    ip: IPAddress | None  # set when the host is an address

    @property
    def authority(self) -> str:
        """host[:port] as in the URL and the Host header."""
        host = f"[{self.host}]" if self.ip is not None and self.ip.version == 6 else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL rebuilt from the parsed fields: the only form stored and used."""
        return f"{self.scheme}://{self.authority}{self.path}"


def parse_url(url: str) -> Target:
    """Parse an http(s) URL strictly, or raise RefusedURL with a message for a person."""
    if not isinstance(url, str) or not url:
        raise RefusedURL("Give an http:// or https:// URL.")
    if len(url) > MAX_URL_LENGTH:
        raise RefusedURL(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if "\\" in url:
        raise RefusedURL("The URL must not contain backslashes.")
    if any(not "!" <= c <= "~" for c in url):
        raise RefusedURL(
            "The URL must not contain spaces, control characters or non-ASCII characters "
            "(percent-encode them in the path; write international names in punycode)."
        )
    if "#" in url:
        raise RefusedURL("The URL must not contain a fragment (#...).")
    match = _URL.fullmatch(url)
    if not match or match["scheme"].lower() not in DEFAULT_PORTS:
        raise RefusedURL("Give an http:// or https:// URL.")
    scheme, authority = match["scheme"].lower(), match["authority"]
    if "@" in authority:
        raise RefusedURL("The URL must not contain a user name or password (user@...).")
    parts = _AUTHORITY.fullmatch(authority)
    if not parts:
        raise RefusedURL(f"{authority!r} is not a valid host name or address with a port.")
    host, ip = _parse_host(parts["ipv6"], parts["name"])
    port = int(parts["port"]) if parts["port"] else DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise RefusedURL(f"{port} is not a valid port.")
    path = match["rest"]
    path = "/" + path if not path.startswith("/") else path  # "" or "?query"
    if not _PATH.fullmatch(path):
        raise RefusedURL("The URL's path has characters that must be percent-encoded.")
    return Target(scheme=scheme, host=host, port=port, path=path, ip=ip)


def _parse_host(ipv6: str | None, name: str | None) -> tuple[str, IPAddress | None]:
    if ipv6 is not None:
        try:
            ip = ipaddress.IPv6Address(ipv6)
        except ValueError:
            raise RefusedURL(f"[{ipv6}] is not a valid IPv6 address.") from None
        return str(ip), ip
    name = name.lower()
    labels = name.split(".")
    # A name ending in a number is an IPv4 address to libc (127.1, 0x7f.1, 2130706433...):
    # only the four-decimal form, which every parser reads the same way, is accepted.
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            ip = ipaddress.IPv4Address(name)
        except ValueError:
            raise RefusedURL(
                f"{name} is not a valid IPv4 address: write it as four decimal numbers, "
                "like 192.0.2.10."
            ) from None
        return str(ip), ip
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise RefusedURL(f"{name!r} is not a valid host name.")
    return name, None


# ---------------------------------------------------------------- addresses


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    found = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    if int(ip) >> 32 == 0 or ip in _NAT64:  # ::a.b.c.d and 64:ff9b::a.b.c.d
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def internal_reason(ip: IPAddress) -> str | None:
    """Why a tenant's download must not go to this address, or None when it is public."""
    for kind in ("unspecified", "loopback", "link_local", "private", "multicast", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if getattr(ip, "is_site_local", False):
        return "site-local"
    if not ip.is_global:
        return "not global"
    if isinstance(ip, ipaddress.IPv6Address):
        for v4 in _embedded_ipv4(ip):
            reason = internal_reason(v4)
            if reason:
                return f"{reason} IPv4 {v4} inside"
    return None


def resolve(target: Target, *, public_only: bool) -> list[IPAddress]:
    """The addresses to connect to (resolved once); for tenants, every one must be public.

    A tenant gets one answer for a name that does not resolve and for one that leads to an
    internal address, so that imports cannot map the panel's internal DNS."""
    if target.ip is not None:
        addresses = [target.ip]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            infos = []
        addresses = []
        for family, _type, _proto, _name, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
                if ip not in addresses:
                    addresses.append(ip)
        if not addresses and public_only:
            raise RefusedURL(_NOT_PUBLIC_NAME.format(host=target.host))
        if not addresses:
            raise DownloadError(f"The host name {target.host!r} does not resolve.")
    if public_only:
        for ip in addresses:
            reason = internal_reason(ip)
            if reason and target.ip is None:
                raise RefusedURL(_NOT_PUBLIC_NAME.format(host=target.host))
            if reason:
                raise RefusedURL(
                    f"{ip} is not a public address ({reason}): only administrators may "
                    "import from those."
                )
    return addresses


_NOT_PUBLIC_NAME = (
    "{host} does not resolve to public addresses only: only administrators may import from "
    "other addresses."
)


def check_url(url: str, *, public_only: bool) -> Target:
    """Parse the URL and, for tenants, check where it leads (no connection is made)."""
    target = parse_url(url)
    if public_only:
        resolve(target, public_only=True)
    return target


# ---------------------------------------------------------------- connecting


def _request(target: Target, *, public_only: bool) -> http.client.HTTPResponse:
    """Send GET target.path to one of target's checked addresses; the caller closes it."""
    addresses = resolve(target, public_only=public_only)
    sock, error = None, None
    for ip in addresses:
        try:
            sock = socket.create_connection((str(ip), target.port), timeout=CONNECT_TIMEOUT)
            break
        except OSError as exc:
            error = exc
    if sock is None:
        raise DownloadError(f"Could not fetch {target.url}: {error}")
    try:
        if target.scheme == "https":
            context = ssl.create_default_context()  # verifies the chain and the host name
            sock = context.wrap_socket(sock, server_hostname=target.host)
        sock.settimeout(READ_TIMEOUT)
        # http.client only writes the request and reads the answer: it is handed the
        # connected socket, and the request line and Host header come from the Target.
        conn = http.client.HTTPConnection(target.host, target.port)
        conn.sock = sock
        conn.putrequest("GET", target.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", target.authority)
        conn.putheader("User-Agent", "cloudpanel")
        conn.putheader("Accept-Encoding", "identity")  # the bytes as stored, no decompression
        conn.putheader("Connection", "close")
        conn.endheaders()
        response = conn.getresponse()
        conn.close()  # the socket now lives as long as the response reading from it
        return response
    except (OSError, http.client.HTTPException) as exc:
        sock.close()
        raise DownloadError(f"Could not fetch {target.url}: {exc}") from exc


@contextmanager
def open_url(url: str, *, public_only: bool) -> Iterator[http.client.HTTPResponse]:
    """The response to GET url, following redirects for admins only (each hop re-checked)."""
    target = parse_url(url)
    for hop in range(MAX_REDIRECTS + 1):
        response = _request(target, public_only=public_only)
        location = response.getheader("Location")
        if response.status not in REDIRECTS or not location:
            break
        response.close()
        if public_only:
            raise RefusedURL(
                f"{target.url} redirects elsewhere; imports by tenants do not follow "
                "redirects (give the final URL)."
            )
        if hop == MAX_REDIRECTS:
            raise DownloadError(f"{url} redirects more than {MAX_REDIRECTS} times.")
        try:
            target = parse_url(urljoin(target.url, location))
        except RefusedURL as exc:
            raise RefusedURL(f"{target.url} redirects to a refused URL: {exc}") from None
    try:
        yield response
    finally:
        response.close()
