"""/ws/status/ over the real socket stack (origin check, session cookie, Redis channel layer).

A consumer handles its channel's messages in order, so "the foreign event published before
the own one never arrives" is shown by the next frame being the own one, not by waiting.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from cloudpanel.asgi import application
from cloudpanel.jobs import consumers as job_consumers
from cloudpanel.jobs.events import broadcast as broadcast_job
from cloudpanel.jobs.events import job_to_event
from cloudpanel.jobs.models import Job
from cloudpanel.live import metrics
from cloudpanel.live.publisher import groups_for, project_group, publish
from cloudpanel.live.snapshot import status_snapshot
from cloudpanel.projects.models import Membership, Project
from cloudpanel.projects.services import membership_remove
from hosts.events import broadcast_host, host_to_event
from hosts.models import Host
from instances.events import broadcast_instance, instance_message
from instances.models import Flavor, Instance

pytestmark = [pytest.mark.django_db(transaction=True)]

ORIGIN = b"http://127.0.0.1:8000"
HOST_NAME = "hv-secret-07"
SECRET_REASON = f"libvirt: pool zeta9 on {HOST_NAME} is full"
SECRET_STEP = f"Copying to {HOST_NAME}:/srv/pool-zeta9/x.qcow2"
SECRETS = (HOST_NAME, "zeta9", "/srv/")


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def sample(t: float, cpu: float) -> dict:
    return {
        "t": t, "cpu_percent": cpu, "memory_used_bytes": 1 << 20, "memory_total_bytes": 1 << 30,
        "disk_read_bps": 0.0, "disk_write_bps": 0.0, "net_rx_bps": 1.0, "net_tx_bps": 2.0,
    }  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_metrics():
    client = metrics.client()
    for key in client.scan_iter("cloudpanel:metrics:*"):
        client.delete(key)
    yield


def _job(project, target, *, status="pending"):
    return Job.objects.create(
        kind="instance.start", target_type="instance", target_id=target.pk if target else None,
        target_name=target.name if target else "", status=status, step=SECRET_STEP,
        public_step="Starting", project=project,
    )  # fmt: skip


def build_world(admin, member, viewer=None) -> dict:
    """Projects a (the member's; the viewer's too) and b, a host, their instances and jobs,
    and the latest metrics of each."""
    a = Project.objects.create(name="proj-a")
    b = Project.objects.create(name="proj-b")
    Membership.objects.create(project=a, user=member)
    if viewer is not None:
        Membership.objects.create(project=a, user=viewer, role=Membership.Role.VIEWER)
    host = Host.objects.create(
        name=HOST_NAME, uri="qemu+tcp://127.0.0.1:21999/system", transport="tcp",
        status="online",
    )  # fmt: skip
    flavor = Flavor.objects.create(name="small", vcpus=1, ram_mib=512, disk_gib=1)

    def vm(name, project, state="running", reason=""):
        return Instance.objects.create(
            name=name, project=project, flavor=flavor, host=host, state=state, state_reason=reason
        )

    world = {
        "a": a, "b": b, "host": host,
        "a1": vm("mine-1", a), "a2": vm("mine-2", a, "error", SECRET_REASON),
        "b1": vm("theirs-1", b),
    }  # fmt: skip
    world["job_a"] = _job(a, world["a1"])
    world["job_a_done"] = _job(a, world["a2"], status="succeeded")
    world["job_b"] = _job(b, world["b1"])
    world["job_host"] = _job(None, None, status="running")  # a host job: admins only
    metrics.record_many(
        metrics.INSTANCE,
        {world["a1"].pk: sample(100.0, 11.0), world["b1"].pk: sample(100.0, 99.0)},
    )
    metrics.record_many(metrics.HOST, {host.pk: {**sample(100.0, 55.0), "instances": 2}})
    world["cookies"] = {
        "admin": session_cookie(admin),
        "member": session_cookie(member),
        **({"viewer": session_cookie(viewer)} if viewer is not None else {}),
    }
    return world


@pytest.fixture
def viewer_user(django_user_model):
    return django_user_model.objects.create_user("victor", password="pw-victor-123")


@pytest.fixture
def world(admin_user, member_user, viewer_user):
    return build_world(admin_user, member_user, viewer_user)


async def open_status(cookie: bytes, origin: bytes | None = ORIGIN):
    headers = [(b"cookie", cookie), (b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin))
    socket = WebsocketCommunicator(application, "/ws/status/", headers=headers)
    connected, code = await socket.connect(timeout=10)
    return socket, connected, code


async def frame(socket) -> tuple[dict, str]:
    raw = await socket.receive_from(timeout=15)
    return json.loads(raw), raw


def job_message(job) -> dict:
    """What cloudpanel.jobs.events.broadcast sends, to send it to other groups."""
    public = job_to_event(job, public=True)
    return {"type": "job.update", "job": job_to_event(job), "public": public}


def metrics_message(world, t: float) -> dict:
    host = world["host"]
    return {
        "type": "status.metrics", "host": host.pk, "t": t,
        "host_totals": {**sample(t, 50.0), "instances": 2},
        "instances": [
            {"id": world["a1"].pk, "project": world["a"].pk, **sample(t, 12.0)},
            {"id": world["b1"].pk, "project": world["b"].pk, **sample(t, 98.0)},
        ],
    }  # fmt: skip


def publish_metrics(world, t: float) -> None:
    # As the watcher sends a sweep: to the admins and to each project with instances in it.
    groups = sorted({*groups_for(world["a"].pk), *groups_for(world["b"].pk)})
    publish(groups, metrics_message(world, t))


# What a tenant sees


@pytest.mark.parametrize("who", ["member", "viewer"])
async def test_tenant_snapshot_then_deltas_of_its_project_only_in_public_view(world, who):
    socket, connected, _ = await open_status(world["cookies"][who])
    assert connected
    snap, raw = await frame(socket)
    assert snap["type"] == "snapshot" and "resync" not in snap
    assert [i["id"] for i in snap["instances"]] == [world["a1"].pk, world["a2"].pk]
    a2 = snap["instances"][1]
    assert a2["state"] == "error" and "host" not in a2 and a2["host_key"]
    assert a2["state_reason"] and a2["state_reason"] != SECRET_REASON
    assert [j["id"] for j in snap["jobs"]] == [world["job_a"].pk]  # active, own project
    assert snap["jobs"][0]["step"] == "Starting"
    assert snap["hosts"] == [] and snap["metrics"]["hosts"] == {}
    assert snap["metrics"]["instances"] == {str(world["a1"].pk): sample(100.0, 11.0)}
    for secret in (*SECRETS, "theirs-1"):
        assert secret not in raw

    # Deltas: each foreign one is published before an own one; the next frame is the own one.
    b1, a1 = world["b1"], world["a1"]
    b1.state = a1.state = "shutoff"
    await sync_to_async(broadcast_instance)(b1)
    await sync_to_async(broadcast_host)(world["host"])
    # Sent to the tenant's own groups by mistake: the consumer still checks each event.
    mine = [project_group(world["a"].pk), f"jobs.project.{world['a'].pk}"]
    await sync_to_async(publish)(mine, instance_message(b1))
    host_message = {"type": "status.host", "host": host_to_event(world["host"])}
    await sync_to_async(publish)(mine, host_message)
    await sync_to_async(publish)(mine, job_message(world["job_b"]))
    await sync_to_async(publish)(mine, job_message(world["job_host"]))
    await sync_to_async(broadcast_instance)(a1)
    event, raw = await frame(socket)
    assert event == {"type": "instance", "instance": {**snap["instances"][0], "state": "shutoff",
                                                      "state_display": "Shut off"}}  # fmt: skip

    await sync_to_async(broadcast_job)(world["job_b"])
    await sync_to_async(broadcast_job)(world["job_host"])
    await sync_to_async(broadcast_job)(world["job_a"])
    event, raw = await frame(socket)
    assert event["type"] == "job" and event["job"]["id"] == world["job_a"].pk
    assert event["job"]["step"] == "Starting" and HOST_NAME not in raw

    await sync_to_async(publish_metrics)(world, 105.0)
    event, raw = await frame(socket)
    assert event["type"] == "metrics" and event["t"] == 105.0
    assert [s["id"] for s in event["instances"]] == [world["a1"].pk]
    assert "host_totals" not in event and "host" not in event
    assert await socket.receive_nothing()
    await socket.disconnect()


async def test_admin_gets_everything_in_the_admin_view_with_hosts(world):
    socket, connected, _ = await open_status(world["cookies"]["admin"])
    assert connected
    snap, _ = await frame(socket)
    assert {i["id"] for i in snap["instances"]} == {world[k].pk for k in ("a1", "a2", "b1")}
    by_id = {i["id"]: i for i in snap["instances"]}
    assert by_id[world["a2"].pk]["state_reason"] == SECRET_REASON
    assert by_id[world["a2"].pk]["host"] == world["host"].pk
    assert {j["id"] for j in snap["jobs"]} == {world[k].pk for k in ("job_a", "job_b", "job_host")}
    assert {j["step"] for j in snap["jobs"]} == {SECRET_STEP}
    assert [h["name"] for h in snap["hosts"]] == [HOST_NAME]
    assert snap["metrics"]["hosts"][str(world["host"].pk)]["instances"] == 2
    assert set(snap["metrics"]["instances"]) == {str(world["a1"].pk), str(world["b1"].pk)}

    host = world["host"]
    host.status = "offline"
    await sync_to_async(broadcast_host)(host)
    event, _ = await frame(socket)
    assert event["type"] == "host" and event["host"]["status"] == "offline"

    await sync_to_async(broadcast_instance)(world["b1"])
    event, _ = await frame(socket)
    assert event["instance"]["id"] == world["b1"].pk and event["instance"]["host"] == host.pk

    await sync_to_async(publish_metrics)(world, 110.0)
    event, _ = await frame(socket)  # once, though it went to three groups
    assert event["host"] == host.pk and event["host_totals"]["instances"] == 2
    assert len(event["instances"]) == 2
    await sync_to_async(broadcast_job)(world["job_host"])
    event, _ = await frame(socket)
    assert event["job"]["id"] == world["job_host"].pk and event["job"]["step"] == SECRET_STEP
    assert await socket.receive_nothing()
    await socket.disconnect()


async def test_a_member_of_two_projects_gets_each_sample_once(world, member_user):
    await sync_to_async(Membership.objects.create)(project=world["b"], user=member_user)
    socket, connected, _ = await open_status(world["cookies"]["member"])
    assert connected
    snap, _ = await frame(socket)
    assert len(snap["instances"]) == 3
    await sync_to_async(publish_metrics)(world, 120.0)  # reaches both project groups
    event, _ = await frame(socket)
    assert sorted(s["id"] for s in event["instances"]) == sorted([world["a1"].pk, world["b1"].pk])
    assert await socket.receive_nothing()
    await socket.disconnect()


# Who is refused


async def test_anonymous_and_foreign_origins_are_refused(world):
    _, connected, code = await open_status(b"")
    assert not connected and code == job_consumers.CLOSE_SIGNED_OUT
    for origin in (b"http://evil.example:8000", b"http://127.0.0.1:8001", None):
        _, connected, _ = await open_status(world["cookies"]["member"], origin)
        assert not connected, origin


async def test_membership_removed_closes_the_socket_and_nothing_follows(world, member_user):
    socket, connected, _ = await open_status(world["cookies"]["member"])
    assert connected
    await frame(socket)
    await sync_to_async(membership_remove)(project=world["a"], user=member_user)
    await sync_to_async(broadcast_instance)(world["a1"])  # published after the removal
    closed = await socket.receive_output(timeout=15)
    assert closed == {"type": "websocket.close", "code": job_consumers.CLOSE_ACCESS_LOST}
    assert await socket.receive_nothing()
    await socket.disconnect()


async def test_a_lost_revoke_message_is_caught_by_the_per_event_recheck(
    world, member_user, monkeypatch
):
    socket, connected, _ = await open_status(world["cookies"]["member"])
    assert connected
    await frame(socket)

    @sync_to_async
    def raw_delete():  # no signal, so no "access.changed" reaches the socket
        qs = Membership.objects.filter(project=world["a"], user=member_user)
        qs._raw_delete(qs.db)

    await raw_delete()
    monkeypatch.setattr(job_consumers, "RECHECK_SECONDS", -1.0)  # every event re-reads access
    await sync_to_async(publish_metrics)(world, 130.0)
    closed = await socket.receive_output(timeout=15)
    assert closed == {"type": "websocket.close", "code": job_consumers.CLOSE_ACCESS_LOST}
    assert await socket.receive_nothing()
    await socket.disconnect()


async def test_signing_out_ends_the_socket(world):
    socket, connected, _ = await open_status(world["cookies"]["admin"])
    assert connected
    await frame(socket)

    @sync_to_async
    def sign_out():
        client = Client()
        client.cookies["sessionid"] = world["cookies"]["admin"].decode().split("=", 1)[1]
        assert client.post("/logout/").status_code == 302

    await sign_out()
    closed = await socket.receive_output(timeout=15)
    assert closed == {"type": "websocket.close", "code": job_consumers.CLOSE_SIGNED_OUT}
    await socket.disconnect()


async def test_a_reconnecting_client_gets_a_new_snapshot(world):
    socket, connected, _ = await open_status(world["cookies"]["member"])
    assert connected
    snap, _ = await frame(socket)
    assert snap["instances"][0]["state"] == "running"
    await socket.disconnect()

    # Changed while no socket was open (no event reached anyone): the next snapshot has it.
    await sync_to_async(Instance.objects.filter(pk=world["a1"].pk).update)(state="shutoff")
    socket, connected, _ = await open_status(world["cookies"]["member"])
    assert connected
    snap, _ = await frame(socket)
    assert snap["type"] == "snapshot" and snap["instances"][0]["state"] == "shutoff"
    await socket.disconnect()


# The snapshot's cost


def _fleet(project, other, count: int) -> None:
    host = Host.objects.first()
    flavor = Flavor.objects.first()
    rows = Instance.objects.bulk_create(
        Instance(name=f"bulk-{project.pk}-{i}", project=(project, other)[i % 2], flavor=flavor,
                 host=host, state="running")
        for i in range(count)
    )  # fmt: skip
    Job.objects.bulk_create(
        Job(kind="instance.reboot", target_type="instance", target_id=row.pk, project=row.project,
            status="running")
        for row in rows[: count // 4]
    )  # fmt: skip


@pytest.mark.parametrize("who", ["admin_user", "member_user"])
def test_the_snapshot_costs_the_same_few_queries_for_any_fleet(world, who, request):
    user = request.getfixturevalue(who)

    def queries() -> tuple[int, dict]:
        with CaptureQueriesContext(connection) as captured:
            snap = status_snapshot(user)
        return len(captured), snap

    small, _ = queries()
    _fleet(world["a"], world["b"], 400)
    large, snap = queries()
    # Memberships for each of the two selectors, instances, jobs (and hosts for admins).
    assert small == large <= 5
    assert len(snap["instances"]) == (403 if who == "admin_user" else 202)
