"""Every registered operation is audited through Operation.start: `accepted` with its job,
or `denied`/`failed` with the refusal's message.

The kinds are enumerated from the registry: an operation registered without an entry in
TARGETS below fails the test, so a new operation cannot go unaudited unnoticed."""

from __future__ import annotations

import pytest

from cloudpanel import errors
from cloudpanel.audit.models import AuditEvent
from cloudpanel.jobs import registry
from cloudpanel.jobs.models import Job

from .conftest import events, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(blue, flavor, big_flavor, host, image):
    from images.models import Image
    from instances.models import Backup, DiskMirror, Snapshot, Volume

    Image.objects.filter(pk=image.pk).update(
        cloud_init=True, default_user="debian", distribution=Image.Distribution.ALL
    )
    image.refresh_from_db()

    running = make_instance(blue, flavor, host, name="web", state="running", image=image)
    stopped = make_instance(
        blue, flavor, host, name="db", state="shutoff", domain="cp-y", image=image
    )
    paused = make_instance(blue, flavor, host, name="cache", state="paused", domain="cp-z")
    snapshot = Snapshot.objects.create(instance=running, name="snap1")
    backup = Backup.objects.create(
        project=blue, instance=stopped, instance_name="db", flavor=flavor, image=image,
        host=host, name="b1", state=Backup.State.READY,
    )  # fmt: skip
    Volume.objects.create(
        backup=backup, host=host, pool="default", name="b1-vda", path="/b1-vda",
        disk_target="vda", state=Volume.State.READY,
    )  # fmt: skip
    mirror = DiskMirror.objects.create(instance=running, disk_target="vda")
    return {
        "project": blue, "running": running, "stopped": stopped, "paused": paused,
        "snapshot": snapshot, "backup": backup, "mirror": mirror, "host": host, "image": image,
        "flavor": flavor, "big_flavor": big_flavor,
    }  # fmt: skip


# kind -> (the target in `world`, the start keywords)
TARGETS = {
    "backup.restore": ("backup", lambda w: {"name": "restored"}),
    "host.evacuate": ("host", lambda w: {}),
    "image.distribute": ("image", lambda w: {}),
    "image.import": (
        None,
        lambda w: {
            "url": "http://93.184.216.34/disk.qcow2",
            "name": "imported",
            "disk_format": "qcow2",
            "project": w["project"],
        },
    ),
    "image.mirror": ("image", lambda w: {"host": w["host"]}),
    "instance.backup": ("running", lambda w: {"name": "nightly"}),
    "instance.capture": ("running", lambda w: {"name": "golden"}),
    "instance.cold-migrate": ("stopped", lambda w: {}),
    "instance.create": (
        None,
        lambda w: {
            "name": "new",
            "image": w["image"],
            "flavor": w["flavor"],
            "project": w["project"],
            "password": "hunter2-secret",
            "user_data": "#cloud-config\npassword: s3cret-in-user-data\n",
        },
    ),
    "instance.delete": ("stopped", lambda w: {}),
    "instance.migrate": ("running", lambda w: {}),
    "instance.mirror": ("running", lambda w: {}),
    "instance.mirror-pivot": ("running", lambda w: {"mirror": w["mirror"]}),
    "instance.mirror-stop": ("running", lambda w: {"mirror": w["mirror"]}),
    "instance.reboot": ("running", lambda w: {}),
    "instance.rebuild": ("running", lambda w: {}),
    "instance.reset": ("running", lambda w: {}),
    "instance.resize": ("stopped", lambda w: {"flavor": w["big_flavor"]}),
    "instance.resume": ("paused", lambda w: {}),
    "instance.shutdown": ("running", lambda w: {}),
    "instance.snapshot_create": ("running", lambda w: {"name": "snap2"}),
    "instance.snapshot_delete": ("running", lambda w: {"snapshot": w["snapshot"]}),
    "instance.snapshot_revert": ("running", lambda w: {"snapshot": w["snapshot"]}),
    "instance.start": ("stopped", lambda w: {}),
    "instance.stop": ("running", lambda w: {}),
    "instance.suspend": ("running", lambda w: {}),
}
# What must be accepted from an admin on the test driver's host (the rest need a second host,
# a real guest or a mirror underway: their refusal is audited, checked below).
MUST_ACCEPT = {
    "backup.restore", "image.distribute", "image.mirror", "instance.backup", "instance.capture",
    "instance.create", "instance.delete", "instance.reboot", "instance.reset", "instance.resize",
    "instance.resume", "instance.shutdown", "instance.snapshot_create",
    "instance.snapshot_delete", "instance.snapshot_revert", "instance.start", "instance.stop",
    "instance.suspend",
}  # fmt: skip


def test_every_registered_operation_has_an_entry():
    # Test modules register kinds of their own (test.*); the product's are the ones here.
    product = {k for k in registry.registered() if not k.startswith("test.")}
    assert product == set(TARGETS)


def _attempt(kind, world, user):
    operation = registry.get(kind)
    target_name, params = TARGETS[kind]
    target = world[target_name] if target_name else None
    before = AuditEvent.objects.count()
    try:
        job = operation.start(user=user, target=target, **params(world))
    except Exception as exc:  # noqa: BLE001  (whatever refuses, the audit says so)
        job, error = None, exc
    else:
        error = None
    written = list(AuditEvent.objects.order_by("id")[before:])
    return job, error, written


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_a_refused_start_is_audited_denied(kind, world, red_member):
    """Someone of another project: every operation refuses, and says so in the audit."""
    job, error, written = _attempt(kind, world, red_member)
    assert job is None and error is not None
    assert len(written) == 1, [e.action for e in written]
    event = written[0]
    assert (event.action, event.user, event.username) == (kind, red_member, "rita")
    expected = (
        "denied" if isinstance(error, (errors.PermissionDenied, errors.NotFound)) else "failed"
    )
    assert event.result == expected
    assert event.message == errors.page_message(error)
    assert event.job is None
    assert event.source == "system"  # called outside any request
    target_name = TARGETS[kind][0]
    expected_project = None if target_name in ("host",) else world["project"]
    assert event.project == expected_project


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_an_admins_start_is_audited(kind, world, admin):
    job, error, written = _attempt(kind, world, admin)
    starts = [e for e in written if e.action == kind]
    assert len(starts) == 1, [e.action for e in written]
    event = starts[0]
    assert event.user == admin and event.username == "boss"
    if job is None:
        assert kind not in MUST_ACCEPT, error
        assert event.result in ("denied", "failed") and event.message == errors.page_message(error)
        return
    assert event.result == "accepted" and event.job_id == job.id
    assert (event.target_type, event.target_id, event.target_name) == (
        job.target_type,
        str(job.target_id),
        job.target_name,
    )
    assert event.project_id == job.project_id
    assert Job.objects.filter(pk=job.pk).exists()


def test_create_stores_no_secret(world, admin):
    job, error, written = _attempt("instance.create", world, admin)
    assert error is None, error
    (event,) = [e for e in written if e.action == "instance.create"]
    text = repr(event.params)
    assert "hunter2-secret" not in text and "s3cret-in-user-data" not in text
    assert event.params["password"] == "[redacted]"
    assert event.params.get("password_hash", "[redacted]") == "[redacted]"
    user_data = "#cloud-config\npassword: s3cret-in-user-data\n"
    assert event.params["user_data"]["size"] == len(user_data.encode())
    assert len(event.params["user_data"]["sha256"]) == 64
    assert event.params["name"] == "new"
    assert event.params["flavor"] == world["flavor"].pk


def test_a_nested_start_records_once(world, admin):
    """Operations whose start overrides the base's (create, restore, resize...) still write
    one event, not one per layer."""
    before = AuditEvent.objects.count()
    registry.get("instance.stop").start(user=admin, target=world["running"])
    assert AuditEvent.objects.count() == before + 1
    assert events(action="instance.stop")[0].result == "accepted"
