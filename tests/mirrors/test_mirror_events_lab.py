"""What libvirt does to a mirror behind the panel's back reaches its DiskMirror: the real
block-job events of the lab (captured by the virt layer's own subscription, handed to
on_block_job as the watcher does), and a domain destroyed under a mirror (no block-job
event at all: the watcher's lifecycle event does it)."""

from __future__ import annotations

import queue
import time

import pytest

from cloudpanel.virt.events import BLOCK_JOB, LIFECYCLE, DomainEvent, subscribe
from instances.mirror_events import on_block_job
from instances.models import DiskMirror, Volume
from instances.watcher.apply import apply_event
from lab import virsh

from .conftest import disk_source, outside, uri_of
from .test_mirror_lab import mirror_of

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


@pytest.fixture
def block_events(lab_hosts):
    """next(detail) -> the next BLOCK_JOB DomainEvent of lab1 with that detail."""
    events: queue.Queue = queue.Queue()
    sub = subscribe(uri_of(lab_hosts[1]), events.put)

    def next_event(detail: str, timeout: float = 60.0) -> DomainEvent:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = events.get(timeout=1.0)
            except queue.Empty:
                continue
            if getattr(event, "kind", None) == BLOCK_JOB and event.detail == detail:
                return event
        raise AssertionError(f"no block-job event {detail!r}")

    yield next_event
    sub.close()


def test_block_job_events_update_the_mirror(lab, running_instance, admin_user, block_events):
    instance = running_instance()
    host, uri = instance.host, uri_of(instance.host)
    root = instance.volumes.get(role=Volume.Role.ROOT)

    mirror = mirror_of(instance, admin_user)
    ready = block_events("vda copy ready")
    first_sync = mirror.synced_at
    on_block_job(instance, host, uri, ready)  # as the watcher does, after the job's end
    mirror.refresh_from_db()
    assert mirror.state == DiskMirror.State.MIRRORED and mirror.synced_at > first_sync

    # Cancelled behind the panel's back: of no use any more, its volume goes.
    volume_file = outside(lab, mirror.volume)
    virsh(uri, "blockjob", instance.domain_name, "vda", "--abort")
    apply_event(host, uri, block_events("vda copy canceled"))  # the watcher's own path
    mirror.refresh_from_db()
    assert mirror.state == DiskMirror.State.FAILED
    assert "cancelled outside the panel" in mirror.error
    assert mirror.volume is None and not volume_file.exists()
    assert not instance.volumes.filter(role=Volume.Role.MIRROR).exists()

    # Pivoted behind the panel's back: the panel follows (the mirror is the disk now).
    again = mirror_of(instance, admin_user)
    block_events("vda copy ready")
    virsh(uri, "blockjob", instance.domain_name, "vda", "--pivot")
    apply_event(host, uri, block_events("vda copy completed"))
    again.refresh_from_db()
    assert again.state == DiskMirror.State.PIVOTED
    assert disk_source(instance) == again.volume.path
    assert [(v.pk, v.role) for v in instance.volumes.all()] == [(again.volume_id, "root")]
    assert not Volume.objects.filter(pk=root.pk).exists()


def test_destroyed_domain_fails_its_mirror(lab, running_instance, admin_user):
    instance = running_instance()
    host, uri = instance.host, uri_of(instance.host)
    root = instance.volumes.get(role=Volume.Role.ROOT)
    mirror = mirror_of(instance, admin_user)
    volume_file = outside(lab, mirror.volume)
    assert volume_file.exists()

    virsh(uri, "destroy", instance.domain_name)
    # The watcher's event for it (libvirt sends no block-job event when the domain dies).
    stopped = DomainEvent(
        uri=uri, name=instance.domain_name, uuid=str(instance.uuid), kind=LIFECYCLE,
        state="shutoff", event="stopped", detail="destroyed", at=time.time(),
    )  # fmt: skip
    apply_event(host, uri, stopped)
    instance.refresh_from_db()
    assert instance.state == "shutoff"
    mirror.refresh_from_db()
    assert mirror.state == DiskMirror.State.FAILED, mirror.error
    assert "shut off" in mirror.error
    assert mirror.volume is None and not volume_file.exists()
    assert Volume.objects.filter(pk=root.pk).exists()  # the instance's own disk is untouched
    assert outside(lab, root).exists()
