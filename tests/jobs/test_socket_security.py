"""WebSocket edge and access: the real ASGI stack (origin check, session cookie, Redis layer).

The consumer handles its channel's messages in order, so "sent before X" and "never sent
after X" follow from the order of what the test publishes, not from timing.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from cloudpanel.asgi import application
from cloudpanel.jobs import consumers
from cloudpanel.jobs.operations import job_handler
from cloudpanel.jobs.services import broadcast, job_create
from cloudpanel.projects.models import Membership, Project
from cloudpanel.projects.services import membership_remove, membership_set
from cloudpanel.websockets import origin_allowed

from .conftest import session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

SECRET_STEP = "Copying to hv-secret-07:/srv/pool-zeta9/x.qcow2"


@job_handler("test.socket-security")
def _noop(job, ctx):
    return None


def _headers(cookie: bytes, origin: bytes | None, host: bytes = b"127.0.0.1:8000") -> list:
    headers = [(b"cookie", cookie), (b"host", host)]
    if origin is not None:
        headers.append((b"origin", origin))
    return headers


def _job(project, target_id: int):
    job = job_create(
        kind="test.socket-security",
        target_type="thing",
        target_id=target_id,
        project=project,
        enqueue=False,
    )
    job.step, job.public_step = SECRET_STEP, "Copying the image"
    return job


@sync_to_async
def _setup(member_user, admin_user):
    a = Project.objects.create(name="proj-a")
    b = Project.objects.create(name="proj-b")
    Membership.objects.create(project=a, user=member_user)
    return {
        "a": a,
        "b": b,
        "job_a": _job(a, 1),
        "job_b": _job(b, 2),
        "member": session_cookie(member_user),
        "admin": session_cookie(admin_user),
    }


async def _open(path: str, cookie: bytes, origin: bytes | None = b"http://127.0.0.1:8000"):
    socket = WebsocketCommunicator(application, path, headers=_headers(cookie, origin))
    connected, code = await socket.connect()
    return socket, connected, code


# Origin


async def test_origin_must_match_scheme_host_and_port(member_user, admin_user):
    world = await _setup(member_user, admin_user)
    same, connected, _ = await _open("/ws/jobs/", world["member"])
    assert connected
    await same.disconnect()

    for origin in (
        b"http://127.0.0.1:8001",  # same host, another port: the hole being closed
        b"http://127.0.0.1",  # port 80 is another origin than :8000
        b"https://127.0.0.1:8000",  # another scheme
        b"http://evil.example:8000",
        b"null",
    ):
        socket, connected, _ = await _open("/ws/jobs/", world["member"], origin)
        assert not connected, origin


async def test_missing_origin_is_refused(member_user, admin_user):
    world = await _setup(member_user, admin_user)
    _, connected, _ = await _open("/ws/jobs/", world["member"], origin=None)
    assert not connected


async def test_trusted_origin_is_accepted_when_its_host_is_allowed(
    member_user, admin_user, settings
):
    world = await _setup(member_user, admin_user)
    settings.CSRF_TRUSTED_ORIGINS = ["https://panel.example.org"]
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "panel.example.org"]
    socket, connected, _ = await _open("/ws/jobs/", world["member"], b"https://panel.example.org")
    assert connected
    await socket.disconnect()
    settings.ALLOWED_HOSTS = [h for h in settings.ALLOWED_HOSTS if h != "panel.example.org"]
    _, connected, _ = await _open("/ws/jobs/", world["member"], b"https://panel.example.org")
    assert not connected


def _scope(scheme: str, host: bytes, origin: bytes) -> dict:
    return {
        "type": "websocket",
        "scheme": scheme,
        "headers": [(b"host", host), (b"origin", origin)],
    }


async def test_origin_scheme_follows_the_socket_scheme(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    assert origin_allowed(_scope("wss", b"localhost", b"https://localhost"))
    assert origin_allowed(_scope("wss", b"localhost:443", b"https://localhost"))
    assert not origin_allowed(_scope("wss", b"localhost", b"http://localhost"))
    assert origin_allowed(_scope("ws", b"localhost:8000", b"http://LOCALHOST:8000"))
    assert not origin_allowed(_scope("ws", b"localhost:8000", b"http://localhost:8000/path"))
    assert not origin_allowed(_scope("ws", b"localhost:8000", b"http://u@localhost:8000"))
    # Same origin, but the host is not one the panel answers to.
    assert not origin_allowed(_scope("ws", b"panel.internal:80", b"http://panel.internal"))


# Unknown paths


async def test_unknown_socket_path_closes_cleanly(member_user, admin_user):
    world = await _setup(member_user, admin_user)
    for path in ("/ws/nope/", "/ws/jobs/abc/", "/"):
        # Before, the router raised here (a 500); connect() re-raises an app's exception.
        socket, connected, code = await _open(path, world["member"])
        assert not connected and code == 4404, path
        await socket.disconnect()


# What a tenant socket gets


async def test_tenant_socket_gets_only_its_projects_events_and_public_text(member_user, admin_user):
    world = await _setup(member_user, admin_user)
    tenant, connected, _ = await _open("/ws/jobs/", world["member"])
    assert connected
    admin, connected, _ = await _open("/ws/jobs/", world["admin"])
    assert connected

    await sync_to_async(broadcast)(world["job_b"])  # another project's: never for the tenant
    await sync_to_async(broadcast)(world["job_a"])

    raw = await tenant.receive_from(timeout=5)
    event = json.loads(raw)["job"]
    assert event["id"] == world["job_a"].id and event["step"] == "Copying the image"
    for secret in ("hv-secret", "pool-zeta9", "/srv/"):
        assert secret not in raw

    first = await admin.receive_json_from(timeout=5)
    second = await admin.receive_json_from(timeout=5)
    assert [first["job"]["id"], second["job"]["id"]] == [world["job_b"].id, world["job_a"].id]
    assert second["job"]["step"] == SECRET_STEP
    await tenant.disconnect()
    await admin.disconnect()


async def test_tenant_job_socket_snapshot_is_public(member_user, admin_user):
    world = await _setup(member_user, admin_user)

    @sync_to_async
    def save_step():
        world["job_a"].save(update_fields=["step", "public_step"])

    await save_step()
    socket, connected, _ = await _open(f"/ws/jobs/{world['job_a'].id}/", world["member"])
    assert connected
    raw = await socket.receive_from(timeout=5)
    assert "Copying the image" in raw and "hv-secret" not in raw and "pool-zeta9" not in raw
    await socket.disconnect()


# Revocation


async def test_membership_removal_closes_the_socket_and_stops_delivery(member_user, admin_user):
    world = await _setup(member_user, admin_user)
    socket, connected, _ = await _open("/ws/jobs/", world["member"])
    assert connected
    await sync_to_async(broadcast)(world["job_a"])
    assert (await socket.receive_json_from(timeout=5))["job"]["id"] == world["job_a"].id

    await sync_to_async(membership_remove)(project=world["a"], user=member_user)
    await sync_to_async(broadcast)(world["job_a"])  # published after the removal

    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_ACCESS_LOST}
    assert await socket.receive_nothing()  # the event after the removal never went out
    await socket.disconnect()


async def test_removal_closes_a_job_socket_too(member_user, admin_user):
    world = await _setup(member_user, admin_user)
    socket, connected, _ = await _open(f"/ws/jobs/{world['job_a'].id}/", world["member"])
    assert connected
    await socket.receive_json_from(timeout=5)  # the snapshot

    # Deleted outside the service (as the admin's inline or a cascade would): the signal.
    await sync_to_async(Membership.objects.filter(project=world["a"], user=member_user).delete)()
    await sync_to_async(broadcast)(world["job_a"])
    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_NOT_FOUND}
    assert await socket.receive_nothing()
    await socket.disconnect()


async def test_per_event_recheck_catches_a_lost_revoke_message(
    member_user, admin_user, monkeypatch
):
    world = await _setup(member_user, admin_user)
    socket, connected, _ = await _open(f"/ws/jobs/{world['job_a'].id}/", world["member"])
    assert connected
    await socket.receive_json_from(timeout=5)

    # Removed without any signal (raw SQL delete): no revoke message reaches the socket.
    @sync_to_async
    def raw_delete():
        qs = Membership.objects.filter(project=world["a"], user=member_user)
        qs._raw_delete(qs.db)

    await raw_delete()
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", -1.0)  # every event re-reads access
    await sync_to_async(broadcast)(world["job_a"])
    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_NOT_FOUND}
    await socket.disconnect()


def _deactivate(user):
    user.is_active = False


def _demote(user):
    user.is_staff = False


def _change_password(user):
    user.set_password("a-new-password-42")


@pytest.mark.parametrize(
    ("who", "change", "code"),
    [
        ("member", _deactivate, consumers.CLOSE_SIGNED_OUT),
        ("member", _change_password, consumers.CLOSE_SIGNED_OUT),  # older sessions end
        ("admin", _demote, consumers.CLOSE_ACCESS_LOST),  # reconnects with a tenant's view
    ],
)
async def test_a_change_to_the_user_closes_their_sockets(
    member_user, admin_user, who, change, code
):
    world = await _setup(member_user, admin_user)
    socket, connected, _ = await _open("/ws/jobs/", world[who])
    assert connected

    @sync_to_async
    def apply_change():
        user = get_user_model().objects.get(pk=(member_user if who == "member" else admin_user).pk)
        change(user)
        user.save()

    await apply_change()
    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": code}
    await socket.disconnect()


async def test_added_project_is_followed_without_reconnecting(member_user, admin_user):
    world = await _setup(member_user, admin_user)
    socket, connected, _ = await _open("/ws/jobs/", world["member"])
    assert connected
    await sync_to_async(membership_set)(project=world["b"], user=member_user)
    # The access change reaches the socket's channel before this event and is handled first
    # (in order): once the event arrives, the socket has joined project b's group.
    await sync_to_async(broadcast)(world["job_a"])
    assert (await socket.receive_json_from(timeout=5))["job"]["id"] == world["job_a"].id
    await sync_to_async(broadcast)(world["job_b"])
    assert (await socket.receive_json_from(timeout=5))["job"]["id"] == world["job_b"].id
    await socket.disconnect()


async def test_signing_out_closes_the_sockets_of_that_session(member_user, admin_user):
    world = await _setup(member_user, admin_user)
    socket, connected, _ = await _open("/ws/jobs/", world["member"])
    assert connected

    @sync_to_async
    def sign_out():
        client = Client()
        client.cookies["sessionid"] = world["member"].decode().split("=", 1)[1]
        assert client.post("/logout/").status_code == 302

    await sign_out()
    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_SIGNED_OUT}
    await socket.disconnect()


async def test_an_idle_socket_stays_open_and_still_gets_events(member_user, admin_user):
    # channels-redis polls with a 5 s blocking pop: a Redis read timeout at or below that
    # (redis-py 8 defaults to 5 s) tore idle sockets down. Idle past two polls, then an event.
    world = await _setup(member_user, admin_user)
    socket, connected, _ = await _open("/ws/jobs/", world["member"])
    assert connected
    await asyncio.sleep(12)
    await sync_to_async(broadcast)(world["job_a"])
    message = await socket.receive_json_from(timeout=5)
    assert message["job"]["id"] == world["job_a"].id
    await socket.disconnect()
