"""Live job progress over a real WebSocket stack (session cookie, origin check, Redis layer)."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from cloudpanel.asgi import application
from cloudpanel.jobs.operations import job_handler
from cloudpanel.jobs.services import broadcast, job_create
from cloudpanel.projects.models import Membership, Project

from .conftest import session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@job_handler("test.socket")
def _noop(job, ctx):
    return None


def _headers(cookie: bytes, origin: bytes = b"http://127.0.0.1") -> list:
    return [(b"cookie", cookie), (b"origin", origin), (b"host", b"127.0.0.1")]


@sync_to_async
def _setup(member_user):
    mine = Project.objects.create(name="mine")
    other = Project.objects.create(name="other")
    Membership.objects.create(project=mine, user=member_user)
    my_job = job_create(kind="test.socket", target_type="thing", target_id=1, project=mine,
                        enqueue=False)
    their_job = job_create(kind="test.socket", target_type="thing", target_id=2, project=other,
                           enqueue=False)
    return my_job, their_job, session_cookie(member_user)


async def test_member_gets_live_updates_for_own_job_only(member_user):
    my_job, their_job, cookie = await _setup(member_user)

    socket = WebsocketCommunicator(application, f"/ws/jobs/{my_job.id}/", headers=_headers(cookie))
    connected, _ = await socket.connect()
    assert connected
    first = await socket.receive_json_from(timeout=5)
    assert first["job"]["id"] == my_job.id and first["job"]["status"] == "pending"

    # A member gets the tenant-safe step, never the admin's one.
    my_job.progress, my_job.step, my_job.public_step = 40, "copying to lab0/default", "copying"
    await sync_to_async(broadcast)(my_job)
    update = await socket.receive_json_from(timeout=5)
    assert update["job"]["progress"] == 40 and update["job"]["step"] == "copying"
    assert "lab0" not in str(update)
    await socket.disconnect()

    denied = WebsocketCommunicator(
        application, f"/ws/jobs/{their_job.id}/", headers=_headers(cookie)
    )
    connected, code = await denied.connect()
    assert not connected and code == 4404


async def test_anonymous_and_foreign_origin_are_refused(member_user):
    my_job, _, cookie = await _setup(member_user)
    anon = WebsocketCommunicator(application, "/ws/jobs/", headers=_headers(b""))
    connected, code = await anon.connect()
    assert not connected and code == 4401

    evil = WebsocketCommunicator(
        application, "/ws/jobs/", headers=_headers(cookie, origin=b"http://evil.example")
    )
    connected, _ = await evil.connect()
    assert not connected
