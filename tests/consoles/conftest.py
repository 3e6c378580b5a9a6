"""Console socket helpers: real session cookies, tickets, the real ASGI stack."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from cloudpanel.asgi import application

ORIGIN = b"http://127.0.0.1:8000"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def session_cookie(user) -> bytes:
    """A Cookie header value with a real signed-in session of `user`."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(path: str, cookie: bytes | None, origin: bytes | None = ORIGIN):
    headers = [(b"host", b"127.0.0.1:8000")]
    if cookie:
        headers.append((b"cookie", cookie))
    if origin is not None:
        headers.append((b"origin", origin))
    return WebsocketCommunicator(application, path, headers=headers, subprotocols=["binary"])


async def open_socket(path: str, cookie: bytes | None, origin: bytes | None = ORIGIN):
    """(communicator, connected, close code or subprotocol) through the whole ASGI stack."""
    socket = communicator(path, cookie, origin)
    connected, detail = await socket.connect(timeout=20)
    return socket, connected, detail


async def receive_until(
    socket, wanted: bytes, timeout: float = 30.0, limit: int = 1 << 22
) -> bytes:
    """Binary frames from the socket until `wanted` shows up in them (or the bound passes)."""
    import asyncio

    got = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while wanted not in got:
        remaining = deadline - loop.time()
        assert remaining > 0, f"{wanted!r} not received; got {got[-300:]!r}"
        message = await socket.receive_output(remaining)
        assert message["type"] == "websocket.send", message
        got += message.get("bytes") or (message.get("text") or "").encode()
        assert len(got) < limit, f"{wanted!r} not in the first {limit} bytes: {got[-300:]!r}"
    return got


@pytest.fixture
def uvicorn_port(transactional_db):
    """The project's ASGI app under uvicorn (the Procfile's WebSocket options), in a thread:
    real sockets, so flow control is the real one."""
    from ..conftest import serve_asgi

    with serve_asgi(ws="websockets", ws_per_message_deflate=False) as port:
        yield port
