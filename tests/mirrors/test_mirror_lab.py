"""Disk mirroring on the real libvirt lab (lab1, TCG; tiny OS-less guests): block copy to
the shared pool, writes reaching the copy, pivot, stop, and a domain dying under a mirror."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from cloudpanel.errors import Conflict
from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership
from cloudpanel.virt import blockjobs
from instances.models import DiskMirror, Volume
from instances.operations.mirror import MIRROR_PIVOT, MIRROR_START, MIRROR_STOP
from lab import virsh

from .conftest import (
    IMAGE_OFFSET,
    IMAGE_PATTERN,
    blockjob_info,
    disk_source,
    file_holds_pattern,
    guest_flush,
    guest_write,
    live_xml,
    outside,
    qemu_img_info,
    run,
    run_ok,
    uri_of,
)

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def mirror_of(instance, admin_user, pool="shared") -> DiskMirror:
    job = run_ok(MIRROR_START.start(user=admin_user, target=instance, disk="vda", pool=pool))
    mirror = DiskMirror.objects.select_related("volume").get(pk=job.result["mirror"])
    assert mirror.job_id == job.id
    return mirror


def test_mirror_converges_takes_writes_and_stops_as_a_standalone_copy(
    lab, running_instance, admin_user
):
    instance = running_instance()
    root = instance.volumes.get(role=Volume.Role.ROOT)
    mirror = mirror_of(instance, admin_user)

    # The database and libvirt agree: the copy is in sync, the block job keeps running.
    assert mirror.state == DiskMirror.State.MIRRORED and mirror.synced_at is not None
    assert "Block Copy: [100 %]" in blockjob_info(instance), blockjob_info(instance)
    el = next(
        d
        for d in live_xml(instance).findall("devices/disk")
        if d.find("target").get("dev") == "vda"
    )
    assert el.find("mirror").get("ready") == "yes"
    assert el.find("mirror").get("file") == mirror.volume.path
    volume = mirror.volume
    assert (volume.role, volume.pool, volume.disk_target, volume.state) == (
        "mirror",
        "shared",
        "vda",
        "ready",
    )
    assert volume.path.startswith("/var/lib/libvirt/shared/")
    instance.refresh_from_db()
    assert instance.current_job is None and instance.state == "running"
    job = Job.objects.get(pk=mirror.job_id)
    assert job.progress == 100 and "mirrored" in job.step

    # The running disk is an overlay of the image; its mirror is a whole disk on its own.
    # (its backing file's path is inside the host's namespace: not opened from here)
    assert qemu_img_info(outside(lab, root), chain=False)[0].get("backing-filename")
    chain = qemu_img_info(outside(lab, volume))
    assert len(chain) == 1 and "backing-filename" not in chain[0], chain
    assert chain[0]["virtual-size"] == root.capacity_bytes == volume.capacity_bytes

    # One mirror per disk.
    with pytest.raises(Conflict, match="mirrored already"):
        MIRROR_START.start(user=admin_user, target=instance, disk="vda", pool="shared")

    # A guest write after convergence reaches the copy (read once QEMU let go of the file:
    # while it runs, the qcow2 metadata on disk may lag behind its cache).
    guest_write(instance)
    run_ok(MIRROR_STOP.start(user=admin_user, target=instance, mirror=mirror))
    mirror.refresh_from_db()
    assert mirror.state == DiskMirror.State.STOPPED and mirror.error == ""
    assert "Block Copy" not in blockjob_info(instance)
    assert disk_source(instance) == root.path  # the instance still runs on its own disk
    assert (
        virsh(uri_of(instance.host), "domstate", instance.domain_name).stdout.strip() == "running"
    )

    path = outside(lab, volume)
    assert Volume.objects.filter(pk=volume.pk, role="mirror").exists()
    check = subprocess.run(["qemu-img", "check", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "backing-filename" not in qemu_img_info(path)[0]
    assert file_holds_pattern(path)
    # ... and what only the image (the running overlay's backing file) had.
    assert file_holds_pattern(path, IMAGE_OFFSET, pattern=IMAGE_PATTERN)

    # Stopped: a new mirror of the same disk may start again.
    second = mirror_of(instance, admin_user)
    assert second.pk != mirror.pk and second.state == DiskMirror.State.MIRRORED
    run_ok(MIRROR_STOP.start(user=admin_user, target=instance, mirror=second))


def test_pivot_moves_the_running_instance_onto_the_mirror(lab, running_instance, admin_user):
    instance = running_instance()
    root = instance.volumes.get(role=Volume.Role.ROOT)
    old_file = outside(lab, root)
    mirror = mirror_of(instance, admin_user)
    guest_write(instance)

    job = run_ok(MIRROR_PIVOT.start(user=admin_user, target=instance, mirror=mirror))
    mirror.refresh_from_db()
    assert mirror.state == DiskMirror.State.PIVOTED
    assert job.result["path"] == mirror.volume.path
    # libvirt: the live and the persistent definitions name the mirror; still running.
    assert disk_source(instance) == mirror.volume.path
    assert disk_source(instance, inactive=True) == mirror.volume.path
    assert (
        virsh(uri_of(instance.host), "domstate", instance.domain_name).stdout.strip() == "running"
    )
    assert "Block Copy" not in blockjob_info(instance)
    guest_flush(instance)  # the qcow2 metadata QEMU caches, on disk before reading it here
    assert file_holds_pattern(outside(lab, mirror.volume))  # the guest's data came along
    assert file_holds_pattern(outside(lab, mirror.volume), IMAGE_OFFSET, pattern=IMAGE_PATTERN)
    # The panel: the mirror is the root disk now, the old volume is gone from host and rows.
    assert not Volume.objects.filter(pk=root.pk).exists()
    assert not old_file.exists()
    volumes = list(instance.volumes.all())
    assert [(v.pk, v.role, v.pool) for v in volumes] == [(mirror.volume_id, "root", "shared")]
    instance.refresh_from_db()
    assert instance.state == "running" and instance.current_job is None

    # Pivoted: nothing left to pivot or stop.
    with pytest.raises(Conflict):
        MIRROR_STOP.start(user=admin_user, target=instance, mirror=mirror)


def test_failed_start_removes_its_volume_and_leaves_the_instance_alone(
    lab, running_instance, admin_user
):
    instance = running_instance()
    uri = uri_of(instance.host)
    # Someone copies the disk behind the panel's back: libvirt refuses a second block job.
    virsh(uri, "blockcopy", instance.domain_name, "vda", "/var/lib/libvirt/images/foreign.qcow2",
          "--transient-job")  # fmt: skip
    try:
        job = run(MIRROR_START.start(user=admin_user, target=instance, disk="vda", pool="shared"))
        assert job.status == Job.Status.FAILED
        mirror = DiskMirror.objects.get(instance=instance)
        assert mirror.state == DiskMirror.State.FAILED and "block job" in mirror.error
        assert mirror.volume is None
        assert not instance.volumes.filter(role=Volume.Role.MIRROR).exists()
        assert not list(Path(lab.shared_dir).glob(f"{instance.domain_name}*"))
        instance.refresh_from_db()
        assert (instance.state, instance.state_reason, instance.current_job) == (
            "running",
            "",
            None,
        )
        assert disk_source(instance) == instance.volumes.get(role="root").path
    finally:
        virsh(uri, "blockjob", instance.domain_name, "vda", "--abort", check=False)
        (Path(lab.hosts[1].pool_dir) / "foreign.qcow2").unlink(missing_ok=True)


def test_api_flow(lab, running_instance, api_client, member_user):
    instance = running_instance()
    Membership.objects.create(project=instance.project, user=member_user)
    tenant = APIClient()
    tenant.force_authenticate(member_user)
    base = f"/api/v1/instances/{instance.pk}/mirrors/"
    resp = api_client.post(base, {"disk": "vda", "pool": "shared"}, format="json")
    assert resp.status_code == 202, resp.content
    assert resp.json()["kind"] == "instance.mirror" and resp["Location"]
    job = run_ok(Job.objects.get(pk=resp.json()["id"]))
    assert instance.host.name in job.log and "/var/lib/libvirt/shared" in job.log
    seen = tenant.get(f"/api/v1/jobs/{job.id}/")  # the instance's job, in the tenant's project
    assert seen.status_code == 200 and "Disk vda is mirrored" in seen.json()["step"]
    for secret in (instance.host.name, "/var/lib/libvirt", "shared/", instance.domain_name):
        assert secret not in seen.content.decode(), secret
    (row,) = api_client.get(base).json()
    assert (row["state"], row["pool"], row["disk"]) == ("mirrored", "shared", "vda")
    first_sync = row["synced_at"]
    (row,) = api_client.get(base).json()  # each read refreshes the steady state
    assert row["synced_at"] > first_sync

    resp = api_client.post(f"{base}{row['id']}/stop/")
    assert resp.status_code == 202 and resp.json()["kind"] == "instance.mirror-stop"
    run_ok(Job.objects.get(pk=resp.json()["id"]))
    (row,) = api_client.get(base).json()
    assert row["state"] == "stopped" and row["volume_name"]


def test_cancelled_start_stops_the_copy_and_removes_its_volume(
    lab, running_instance, admin_user, monkeypatch
):
    instance = running_instance()
    guest_write(instance, 0, "16M")  # data to copy, at 1 MiB/s: it cannot converge at once
    job = MIRROR_START.start(
        user=admin_user, target=instance, disk="vda", pool="shared", bandwidth_mib=1
    )
    seen = []
    real_status = blockjobs.copy_status

    def status_then_cancel(*args, **kwargs):
        status = real_status(*args, **kwargs)
        seen.append(status)
        if status is not None and not status.ready:
            Job.objects.filter(pk=job.pk).update(cancel_requested=True)  # as job_cancel does
        return status

    monkeypatch.setattr(blockjobs, "copy_status", status_then_cancel)
    job = run(job)
    assert job.status == Job.Status.CANCELLED, (job.error, job.log)
    assert seen and seen[0] is not None and not seen[0].ready and seen[0].end > 16 * 2**20
    mirror = DiskMirror.objects.get(instance=instance)
    assert (mirror.state, mirror.error, mirror.volume) == ("failed", "Cancelled", None)
    assert "Block Copy" not in blockjob_info(instance)
    assert not list(Path(lab.shared_dir).glob(f"{instance.domain_name}*"))
    instance.refresh_from_db()
    assert (instance.state, instance.state_reason, instance.current_job) == ("running", "", None)


def test_powering_off_keeps_a_converged_mirror_as_a_copy(lab, running_instance, admin_user):
    """A block copy dies with its domain; the panel's power-off ends it first, so the
    mirror stays as a consistent standalone copy instead of being thrown away."""
    from instances.operations import POWER

    instance = running_instance()
    mirror = mirror_of(instance, admin_user)
    guest_write(instance)
    run_ok(POWER["stop"].start(user=admin_user, target=instance))
    mirror.refresh_from_db()
    assert mirror.state == DiskMirror.State.STOPPED, mirror.error
    assert "powered off" in mirror.error and mirror.volume is not None
    path = outside(lab, mirror.volume)
    check = subprocess.run(["qemu-img", "check", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert file_holds_pattern(path)  # the write made while it was mirrored
