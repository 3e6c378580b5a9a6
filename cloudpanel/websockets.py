"""WebSocket edge: the same-origin check and the answer to unknown socket paths.

Channels' AllowedHostsOriginValidator compares host names only, so a page served on another
port of the same host (another app, a dev server) could open sockets with the user's
cookies. Here the Origin must be exactly this server's own origin (scheme, host and port,
as the browser reached it: ws -> http, wss -> https, the Host header), or one listed in
CSRF_TRUSTED_ORIGINS (the panel behind a TLS proxy); and its host must be in ALLOWED_HOSTS.
A missing Origin is refused: browsers always send one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

_HTTP_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
_DEFAULT_PORT = {"http": 80, "https": 443}


def _origin(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, lowercased, the port made explicit."""
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORT or not netloc or "@" in netloc:
        return None
    host, port = split_domain_port(netloc.lower())
    if not host:
        return None
    if port:
        if not port.isdigit():
            return None
        number = int(port)
    else:
        number = _DEFAULT_PORT[scheme]
    return scheme, host, number


def parse_origin(value: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return _origin(parts.scheme, parts.netloc)


def _trusted(origin: tuple[str, str, int]) -> bool:
    scheme, host, port = origin
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        trusted = parse_origin(entry.replace("://*.", "://wildcard.", 1))
        if trusted is None or trusted[0] != scheme or trusted[2] != port:
            continue
        if "://*." in entry:
            suffix = trusted[1][len("wildcard") :]  # ".example.org"
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif trusted[1] == host:
            return True
    return False


def origin_allowed(scope) -> bool:
    headers = dict(scope.get("headers") or [])
    raw_origin = headers.get(b"origin")
    raw_host = headers.get(b"host")
    if not raw_origin or not raw_host:
        return False
    origin = parse_origin(raw_origin.decode("latin-1"))
    if origin is None or not validate_host(origin[1], settings.ALLOWED_HOSTS):
        return False
    own = _origin(_HTTP_SCHEME.get(scope.get("scheme") or "ws", ""), raw_host.decode("latin-1"))
    return origin == own or _trusted(origin)


class SameOriginValidator:
    """ASGI middleware: deny (403 at the handshake) sockets from any other origin."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await _Denier()(scope, receive, send)
        return await self.application(scope, receive, send)


class _Denier(WebsocketDenier):
    # Refused at once: no channel layer, so no Redis call per refused socket, and no
    # blocking receive to cancel when the client goes (redis-py can raise TimeoutError
    # from that cancel, logged as "Exception in ASGI application").
    channel_layer_alias = None


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Every socket path nobody serves: refused with 4404, never a server error."""

    channel_layer_alias = None  # as _Denier: it only closes

    async def connect(self):
        await self.close(code=4404)
