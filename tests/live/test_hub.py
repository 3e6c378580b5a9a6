"""The per-process hub (cloudpanel.live.hub) under real sockets and a real Redis.

Sockets are WebsocketCommunicators of this event loop, so they share this loop's hub, as
the sockets of one server process do. Group memberships are read from Redis itself.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from cloudpanel.asgi import application
from cloudpanel.jobs import consumers as job_consumers
from cloudpanel.jobs.consumers import AccessCheckedConsumer
from cloudpanel.live import hub as hub_module
from cloudpanel.live.hub import hub_for_loop
from cloudpanel.live.publisher import ADMIN_GROUP, apublish, groups_for
from cloudpanel.projects.models import Membership
from cloudpanel.projects.services import membership_remove
from instances.events import instance_message

from .test_status import ORIGIN, build_world, frame, open_status

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(admin_user, member_user):
    return build_world(admin_user, member_user)


def members_here(group: str) -> list[str]:
    """The channels of this process in the layer's group, as Redis has them."""
    layer = get_channel_layer()
    client = redis.Redis.from_url(layer.hosts[0]["address"])
    members = [m.decode() for m in client.zrange(f"asgi:group:{group}", 0, -1)]
    client.close()
    return [m for m in members if layer.client_prefix in m]


async def test_two_sockets_share_one_membership_and_one_delivery(world):
    first, ok1, _ = await open_status(world["cookies"]["admin"])
    second, ok2, _ = await open_status(world["cookies"]["admin"])
    assert ok1 and ok2
    await frame(first)
    await frame(second)
    hub = hub_for_loop()
    assert len(hub.members[ADMIN_GROUP]) == 2
    for group in (ADMIN_GROUP, "jobs.all"):
        assert await sync_to_async(members_here)(group) == [hub.channel]

    received = hub.received
    a1 = world["a1"]
    a1.state = "paused"
    await apublish([ADMIN_GROUP], instance_message(a1))
    for sock in (first, second):
        event, _ = await frame(sock)
        assert event["type"] == "instance" and event["instance"]["state"] == "paused"
    assert hub.received == received + 1  # one delivery from the layer for both sockets
    await first.disconnect()
    await second.disconnect()


async def test_leaving_keeps_the_group_for_the_others_and_the_last_one_cleans_up(world, admin_user):
    first, _, _ = await open_status(world["cookies"]["admin"])
    second, _, _ = await open_status(world["cookies"]["admin"])
    await frame(first)
    await frame(second)
    hub = hub_for_loop()
    channel = hub.channel
    groups = [ADMIN_GROUP, "jobs.all", f"user.{admin_user.pk}"]

    await first.disconnect()
    assert len(hub.members[ADMIN_GROUP]) == 1
    for group in groups:
        assert await sync_to_async(members_here)(group) == [channel]
    a1 = world["a1"]
    a1.state = "shutoff"
    await apublish([ADMIN_GROUP], instance_message(a1))
    event, _ = await frame(second)
    assert event["instance"]["state"] == "shutoff"

    await second.disconnect()
    assert hub.members == {} and hub.joined == set()
    for group in groups:
        assert await sync_to_async(members_here)(group) == []
    assert hub._tasks == []  # no receive loop left behind


async def test_an_event_published_after_a_revocation_never_reaches_the_socket(
    world, member_user, monkeypatch
):
    sock, connected, _ = await open_status(world["cookies"]["member"])
    assert connected
    await frame(sock)
    hub = hub_for_loop()
    states = ("paused", "running", "shutoff", "paused", "running")
    # The socket's re-read of its access ends only once the hub has handed it the revocation
    # and every event after it (bounded): each event would pass the cached access
    # (project a) if it were not held behind the re-check.
    target = hub.received + 1 + len(states)
    original = AccessCheckedConsumer.__dict__["_access"]

    async def access_after_the_events(self):
        deadline = time.monotonic() + 15
        while hub.received < target and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return await original(self)

    monkeypatch.setattr(AccessCheckedConsumer, "_access", access_after_the_events)
    # access.changed is sent on commit, before these are published.
    await sync_to_async(membership_remove)(project=world["a"], user=member_user)
    a1 = world["a1"]
    for state in states:
        a1.state = state
        await apublish(groups_for(world["a"].pk), instance_message(a1))
    closed = await sock.receive_output(timeout=15)
    assert closed == {"type": "websocket.close", "code": job_consumers.CLOSE_ACCESS_LOST}
    assert hub.received >= target
    assert await sock.receive_nothing()
    await sock.disconnect()


async def test_events_held_behind_an_access_check_that_keeps_access_go_out_in_order(
    world, member_user
):
    sock, _, _ = await open_status(world["cookies"]["member"])
    await frame(sock)
    # Another project added: access.changed, then events; the re-check keeps project a.
    await sync_to_async(Membership.objects.create)(project=world["b"], user=member_user)
    a1 = world["a1"]
    states = ["paused", "running", "shutoff"]
    for state in states:
        a1.state = state
        await apublish(groups_for(world["a"].pk), instance_message(a1))
    got = [(await frame(sock))[0]["instance"]["state"] for _ in states]
    assert got == states
    # And the new project's group was joined by the re-check.
    b1 = world["b1"]
    b1.state = "paused"
    await apublish(groups_for(world["b"].pk), instance_message(b1))
    event, _ = await frame(sock)
    assert event["instance"]["id"] == b1.pk
    await sock.disconnect()


# The layer's Redis restarted under the hub


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own (no persistence: a restart loses every group)."""

    def __init__(self, port: int):
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None


@pytest.fixture
def own_redis(settings):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    server = RedisServer(_free_port())
    server.start()
    layers = dict(django_settings.CHANNEL_LAYERS)
    config = dict(layers["default"]["CONFIG"])
    host = {**config["hosts"][0], "address": f"redis://127.0.0.1:{server.port}/0"}
    settings.CHANNEL_LAYERS = {
        "default": {**layers["default"], "CONFIG": {**config, "hosts": [host]}}
    }
    yield server
    server.stop()


@pytest.mark.parametrize("down_seconds", [0.0, 1.5])  # seen by the run id, or by the receive
async def test_a_redis_restart_rejoins_the_groups_and_every_socket_resyncs(
    world, own_redis, monkeypatch, down_seconds
):
    monkeypatch.setattr(hub_module, "WATCH_SECONDS", 0.2)
    status, connected, _ = await open_status(world["cookies"]["admin"])
    assert connected
    await frame(status)
    jobs = WebsocketCommunicator(
        application, "/ws/jobs/",
        headers=[(b"cookie", world["cookies"]["admin"]), (b"host", b"127.0.0.1:8000"),
                 (b"origin", ORIGIN)],
    )  # fmt: skip
    assert (await jobs.connect(timeout=10))[0]
    hub = hub_for_loop()
    assert await sync_to_async(members_here)(ADMIN_GROUP) == [hub.channel]

    await sync_to_async(own_redis.stop)()
    await asyncio.sleep(down_seconds)
    # The new server starts empty, so the hub's memberships are gone; whether the hub has
    # already joined again by now is a race, so only the outcome below is asserted.
    await sync_to_async(own_redis.start)()

    resync, _ = await frame(status)
    assert resync["type"] == "snapshot" and resync["resync"] is True
    assert hub.recoveries >= 1
    closed = await jobs.receive_output(timeout=15)  # no snapshot there: the client reconnects
    assert closed == {"type": "websocket.close", "code": job_consumers.CLOSE_ACCESS_LOST}
    assert await sync_to_async(members_here)(ADMIN_GROUP) == [hub.channel]

    a1 = world["a1"]
    a1.state = "paused"
    await apublish([ADMIN_GROUP], instance_message(a1))
    event, _ = await frame(status)
    while event["type"] == "snapshot":  # both the receive loop and the run id saw it
        assert event["resync"] is True
        event, _ = await frame(status)
    assert event["type"] == "instance" and event["instance"]["state"] == "paused"
    await jobs.disconnect()
    await status.disconnect()
