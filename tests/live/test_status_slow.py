"""A client that stops reading: the server's queue for it stays bounded, then it resyncs.

Real uvicorn (as the Procfile runs it, websockets protocol) in a thread of this process, a
real TCP client that stops reading (a small receive buffer, and the client library reads no
more than one frame ahead), and a burst of large metric frames through the Redis layer.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect

from cloudpanel.live.consumers import StatusConsumer
from cloudpanel.live.publisher import ADMIN_GROUP, apublish
from instances.events import instance_message
from instances.models import Instance

from .test_status import build_world, sample

pytestmark = [pytest.mark.django_db(transaction=True)]

QUEUE = 8
BURST_LIMIT = 1000  # 60 MB: far more than the buffers on the way hold (about 70 here)


@pytest.fixture
def server_port(transactional_db):
    from ..conftest import serve_asgi

    with serve_asgi(ws="websockets") as port:
        yield port


@pytest.fixture
def opened_consumers(monkeypatch) -> list[StatusConsumer]:
    """The server's StatusConsumer objects, to look at their queues from the test."""
    seen: list[StatusConsumer] = []
    original = StatusConsumer.opened

    async def opened(self, extra):
        await original(self, extra)
        seen.append(self)

    monkeypatch.setattr(StatusConsumer, "opened", opened)
    return seen


def big_sweep(t: float, count: int = 400) -> dict:
    """One metrics message for admins, about 60 kB as JSON."""
    return {
        "type": "status.metrics", "host": 1, "t": t, "host_totals": sample(t, 1.0),
        "instances": [{"id": 100000 + i, "project": 1, **sample(t, i % 100)} for i in range(count)],
    }  # fmt: skip


async def test_a_stalled_client_keeps_a_bounded_queue_then_gets_one_resync_snapshot(
    server_port, opened_consumers, admin_user, member_user, settings
):
    settings.STATUS_SOCKET_QUEUE = QUEUE
    world = await sync_to_async(build_world)(admin_user, member_user)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    raw.connect(("127.0.0.1", server_port))
    client = await connect(
        f"ws://127.0.0.1:{server_port}/ws/status/",
        sock=raw,
        origin=f"http://127.0.0.1:{server_port}",
        additional_headers={"Cookie": world["cookies"]["admin"].decode()},
        compression=None,  # bytes on the wire as big as the frames: buffers fill for real
        max_queue=1,  # the library stops reading the socket once one frame waits
        max_size=None,
        proxy=None,
    )
    first = json.loads(await client.recv())
    assert first["type"] == "snapshot" and "resync" not in first
    consumer = opened_consumers[-1]

    # The client reads nothing while the burst goes out.
    published, longest = 0, 0
    while consumer.resyncs == 0 and published < BURST_LIMIT:
        await apublish([ADMIN_GROUP], big_sweep(1000.0 + published))
        published += 1
        assert consumer.outbox is not None, "the socket closed during the burst"
        longest = max(longest, consumer.outbox.qsize())
    assert consumer.resyncs >= 1, "the burst never filled the socket's queue"
    # A few more overflows while still stalled coalesce into the one pending resync.
    for extra in range(3 * QUEUE):
        await apublish([ADMIN_GROUP], big_sweep(5000.0 + extra))
        longest = max(longest, consumer.outbox.qsize())
    assert longest <= QUEUE
    queued = list(consumer.outbox._queue)  # the markers are strings, frames dicts
    assert sum(isinstance(item, str) for item in queued) == 1

    # Changed behind the stream's back while the client was stalled: the resync has it.
    await sync_to_async(Instance.objects.filter(pk=world["a1"].pk).update)(state="paused")
    total = published + 3 * QUEUE

    # The client reads again: old frames that were already on the way, then the snapshot.
    before = 0
    while True:
        message = json.loads(await asyncio.wait_for(client.recv(), timeout=30))
        if message["type"] == "snapshot":
            break
        assert message["type"] == "metrics"
        before += 1
    assert message["resync"] is True
    states = {i["id"]: i["state"] for i in message["instances"]}
    assert states[world["a1"].pk] == "paused"
    assert before + QUEUE < total  # frames were dropped, not held for the client

    # After the resync the stream goes on.
    a1 = world["a1"]
    a1.state = "running"
    await apublish([ADMIN_GROUP], instance_message(a1))
    while True:
        message = json.loads(await asyncio.wait_for(client.recv(), timeout=30))
        if message["type"] == "instance":
            break
        assert message["type"] == "metrics"  # queued after the resync marker
    assert message["instance"]["state"] == "running"
    await client.close()
