"""The authorization matrix over WebSockets: every route of cloudpanel/routing.py, through
the whole ASGI stack (origin check, real session cookies, the Redis channel layer).

B's manager ("other") must never receive project A's objects: each A event is published
before a B event, and a consumer handles its channel's messages in order, so the next frame
being B's proves A's never came (no waiting for an absence).
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from cloudpanel.asgi import application
from cloudpanel.jobs.events import broadcast as broadcast_job
from instances import consoles
from instances.events import broadcast_instance

from . import matrix
from .world import build_world

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = b"http://127.0.0.1:8000"
REFUSALS = (4401, 4403, 4404)


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
async def world(django_user_model, test_host):
    def build():
        world = build_world(django_user_model, test_host)
        world["cookies"] = {role: _cookie(user) for role, user in world["users"].items()}
        world["cookies"]["anon"] = b""
        return world

    return await sync_to_async(build)()


async def _open(path: str, cookie: bytes):
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", ORIGIN)]
    if cookie:
        headers.append((b"cookie", cookie))
    socket = WebsocketCommunicator(application, path, headers=headers, subprotocols=["binary"])
    connected, detail = await socket.connect(timeout=15)
    return socket, connected, detail


async def _frame(socket) -> tuple[dict, str]:
    raw = await socket.receive_from(timeout=15)
    return json.loads(raw), raw


def _paths(world) -> dict[str, str]:
    """Each socket route of the matrix, filled with project A's objects."""
    a = world["a"]
    return {
        "ws/status/": "/ws/status/",
        "ws/jobs/": "/ws/jobs/",
        "ws/jobs/<int:job_id>/": f"/ws/jobs/{a['job'].pk}/",
        "ws/instances/<uuid:uuid>/console/": f"/ws/instances/{a['instance'].uuid}/console/",
        "ws/instances/<uuid:uuid>/serial/": f"/ws/instances/{a['instance'].uuid}/serial/",
        "": "/ws/nothing-here/",
    }


async def test_every_socket_route_refuses_anonymous_callers(world):
    paths = _paths(world)
    assert set(paths) == set(matrix.SOCKETS)
    for path in paths.values():
        socket, connected, code = await _open(path, b"")
        assert not connected, f"{path}: anonymous socket accepted"
        assert code in REFUSALS, f"{path}: closed with {code}"
        await socket.disconnect()


async def test_the_status_stream_of_another_project_never_carries_a(world):
    a, b = world["a"], world["b"]
    member, _, _ = await _open("/ws/status/", world["cookies"]["member"])
    other, connected, _ = await _open("/ws/status/", world["cookies"]["other"])
    assert connected
    snap_member, _ = await _frame(member)
    snap_other, raw = await _frame(other)
    assert snap_other["type"] == "snapshot"
    assert [i["id"] for i in snap_other["instances"]] == [b["instance"].pk]
    assert "zz-a-" not in raw, raw
    assert [i["id"] for i in snap_member["instances"]] == [a["instance"].pk]

    a["instance"].state = b["instance"].state = "shutoff"
    await sync_to_async(broadcast_instance)(a["instance"])
    await sync_to_async(broadcast_job)(a["job"])
    await sync_to_async(broadcast_instance)(b["instance"])
    event, raw = await _frame(other)
    assert event["type"] == "instance" and event["instance"]["id"] == b["instance"].pk, raw
    assert "zz-a-" not in raw
    event, _ = await _frame(member)  # and A's members do get it
    assert event["type"] == "instance" and event["instance"]["id"] == a["instance"].pk
    await member.disconnect()
    await other.disconnect()


async def test_the_job_stream_of_another_project_never_carries_a(world):
    a, b = world["a"], world["b"]
    other, connected, _ = await _open("/ws/jobs/", world["cookies"]["other"])
    assert connected
    seen = []
    await sync_to_async(broadcast_job)(a["job"])
    await sync_to_async(broadcast_job)(b["job"])
    while True:  # a first snapshot-like frame may come; the next job frame must be B's
        event, raw = await _frame(other)
        seen.append(raw)
        assert "zz-a-" not in raw, raw
        if str(b["job"].pk) in raw and "zz-b-" in raw:
            break
    await other.disconnect()


@pytest.mark.parametrize(
    ("role", "accepted"),
    [("viewer", True), ("member", True), ("manager", True), ("other", False), ("admin", True)],
)
async def test_one_job_socket(world, role, accepted):
    path = f"/ws/jobs/{world['a']['job'].pk}/"
    socket, connected, code = await _open(path, world["cookies"][role])
    assert connected is accepted, (role, code)
    if not accepted:
        missing, _, missing_code = await _open("/ws/jobs/987654/", world["cookies"][role])
        assert code == missing_code == 4404, (code, missing_code)  # as for no job at all
        await missing.disconnect()
    await socket.disconnect()


@pytest.mark.parametrize("kind", ["console", "serial"])
async def test_console_tickets_of_a_refused_to_b(world, kind):
    a = world["a"]
    ticket = await sync_to_async(consoles.console_ticket_issue)(
        user=world["users"]["member"], instance=a["instance"]
    )
    base = f"/ws/instances/{a['instance'].uuid}/{kind}/"
    # B's manager: without a ticket, with A's member's ticket, refused as for no instance.
    for path in (base, f"{base}?ticket={ticket['ticket']}", f"{base}?ticket=forged"):
        socket, connected, code = await _open(path, world["cookies"]["other"])
        assert not connected and code in REFUSALS, (path, code)
        await socket.disconnect()
    nobody = f"/ws/instances/00000000-0000-4000-8000-000000000000/{kind}/?ticket=x"
    _, _, missing_code = await _open(nobody, world["cookies"]["other"])
    _, _, a_code = await _open(f"{base}?ticket=x", world["cookies"]["other"])
    assert a_code == missing_code, (a_code, missing_code)  # no existence oracle
    # A viewer gets no ticket at all.
    with pytest.raises(Exception) as refused:
        await sync_to_async(consoles.console_ticket_issue)(
            user=world["users"]["viewer"], instance=a["instance"]
        )
    assert "ermission" in type(refused.value).__name__ or "denied" in str(refused.value).lower()
