"""Sockets refused at the edge (another origin, an unknown path) need no channel layer.

Found from outside: with Redis as the layer, a refused socket still opened a blocking Redis
receive, and cancelling it when the client left sometimes raised redis' TimeoutError,
logged as "Exception in ASGI application". Here the layer points at a closed loopback
port, so any use of it fails the test.
"""

from __future__ import annotations

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from cloudpanel.asgi import application

# The consumer closes old database connections (channels does) even for a refused socket.
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _dead_channel_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    assert get_channel_layer() is not None


async def _open(path: str, origin: bytes):
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", origin)]
    socket = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await socket.connect()
    await socket.disconnect()
    return connected, code


async def test_a_socket_from_another_origin_is_refused_without_the_layer():
    connected, _ = await _open("/ws/jobs/", b"http://127.0.0.1:8001")
    assert not connected


async def test_an_unknown_socket_path_is_closed_without_the_layer():
    connected, code = await _open("/ws/nope/", b"http://127.0.0.1:8000")
    assert not connected and code == 4404
