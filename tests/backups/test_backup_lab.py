"""Backups, restore and capture on the real libvirt lab (tiny OS-less guests on lab1, TCG)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from cloudpanel.jobs.models import Job
from cloudpanel.virt import backup as vbackup
from images.models import Image
from instances import operations
from instances.backups import backups_apply_retention
from instances.models import Backup, Instance, Volume
from instances.operations.backup import BACKUP, CAPTURE, RESTORE
from tests.instances.conftest import dom_state, pool_volumes, run, run_ok

from .conftest import file_sha256, pattern_present, qemu_io

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def provision(user, image, flavor, host, name="vm1") -> Instance:
    # Only admins pin a host: the placement is the admin's; everything after, the member's.
    admin = User.objects.filter(is_staff=True).first()
    job = run_ok(
        operations.CREATE.start(user=admin, name=name, image=image, flavor=flavor, host=host)
    )
    return Instance.objects.get(pk=job.target_id)


def power(user, instance, action: str) -> None:
    instance.refresh_from_db()
    run_ok(operations.POWER[action].start(user=user, target=instance))
    instance.refresh_from_db()


def root_file(lab, instance: Instance):
    return lab.hosts[1].pool_dir / instance.volumes.get(role=Volume.Role.ROOT).name


def take_backup(user, instance, name="") -> Backup:
    instance.refresh_from_db()
    job = run_ok(BACKUP.start(user=user, target=instance, name=name))
    return Backup.objects.get(pk=job.result["backup"])


def test_running_backup_restores_as_new_instance_with_the_data(
    lab, lab_hosts, admin_user, member, qcow2_image, tiny_flavor
):
    host = lab_hosts[1]
    instance = provision(member, qcow2_image, tiny_flavor, host)
    power(member, instance, "stop")
    written = qemu_io(root_file(lab, instance), "write -P 0xab 0 1M")
    assert written.returncode == 0, written.stderr
    power(member, instance, "start")
    assert dom_state(host, instance.domain_name) == "running"
    assert vbackup.push_supported(lab.hosts[1].uri_unix, instance.domain_name)

    backup = take_backup(member, instance, name="first")
    assert backup.state == Backup.State.READY, backup.error
    assert backup.method == Backup.Method.PUSH
    assert dom_state(host, instance.domain_name) == "running"  # the guest never stopped
    (copy,) = backup.volumes.all()
    assert (copy.role, copy.disk_target, copy.instance_id) == ("backup", "vda", instance.pk)
    stored = lab.hosts[1].pool_dir / copy.name
    assert backup.sha256 == copy.sha256 == file_sha256(stored)
    assert backup.size_bytes == stored.stat().st_size
    assert pattern_present(stored)
    instance.refresh_from_db()
    assert instance.state == "running" and instance.current_job is None

    job = run_ok(RESTORE.start(user=member, target=backup, name="restored"))
    restored = Instance.objects.get(pk=job.result["instance"])
    assert restored.pk != instance.pk and restored.project_id == backup.project_id
    assert restored.state == "running" and restored.current_job is None
    assert restored.flavor_id == tiny_flavor.pk and restored.image_id == qcow2_image.pk
    assert dom_state(host, restored.domain_name) == "running"
    power(member, restored, "stop")
    restored_disk = root_file(lab, restored)
    assert restored_disk.name != copy.name
    assert pattern_present(restored_disk)
    assert not pattern_present(restored_disk, 0xCD)  # the check can fail
    # An admin restores it on the other host (no shared storage: streamed across).
    job = run_ok(RESTORE.start(user=admin_user, target=backup, name="elsewhere", host=lab_hosts[0]))
    moved = Instance.objects.get(pk=job.result["instance"])
    assert moved.host_id == lab_hosts[0].pk and moved.state == "running"
    assert dom_state(lab_hosts[0], moved.domain_name) == "running"
    power(admin_user, moved, "stop")
    assert pattern_present(lab.hosts[0].pool_dir / moved.volumes.get(role="root").name)

    # The backup is still there, unchanged, for another restore, also once its instance
    # is deleted.
    assert file_sha256(stored) == backup.sha256
    instance.refresh_from_db()
    run_ok(operations.DELETE.start(user=member, target=instance))
    assert not Instance.objects.filter(pk=instance.pk).exists()
    backup.refresh_from_db()
    assert backup.instance_id is None and backup.volumes.get().name == copy.name
    assert copy.name in pool_volumes(host) and file_sha256(stored) == backup.sha256


def test_fallback_offline_capture_retention_and_failure(
    lab, lab_hosts, admin_user, member, qcow2_image, tiny_flavor, monkeypatch, settings
):
    host = lab_hosts[1]
    instance = provision(member, qcow2_image, tiny_flavor, host)
    power(member, instance, "stop")
    assert qemu_io(root_file(lab, instance), "write -P 0xab 0 1M").returncode == 0

    # Shut off: a plain copy of the volume.
    offline = take_backup(member, instance)
    assert offline.method == Backup.Method.OFFLINE_COPY
    assert pattern_present(lab.hosts[1].pool_dir / offline.volumes.get().name)
    assert offline.sha256 == file_sha256(lab.hosts[1].pool_dir / offline.volumes.get().name)

    # Capture of the shut-off instance: a new private image, usable to create instances.
    job = run_ok(CAPTURE.start(user=member, target=instance, name="captured"))
    image = Image.objects.get(pk=job.result["image"])
    assert (image.status, image.visibility, image.project_id) == (
        "active", "project", instance.project_id
    )  # fmt: skip
    image_file = settings.IMAGE_STORE / image.file
    assert image.sha256 == file_sha256(image_file)
    assert pattern_present(image_file)
    assert not any(".capture" in n or "capture" in n for n in pool_volumes(host))
    from_image = provision(member, image, tiny_flavor, host, name="from-image")
    assert dom_state(host, from_image.domain_name) == "running"

    power(member, instance, "start")
    # A host without the backup API: external snapshot, copy, block commit.
    monkeypatch.setattr(vbackup, "push_supported", lambda uri, domain: False)
    fallback = take_backup(member, instance)
    assert fallback.method == Backup.Method.SNAPSHOT_COPY
    fallback_file = lab.hosts[1].pool_dir / fallback.volumes.get().name
    assert pattern_present(fallback_file)
    assert fallback.sha256 == file_sha256(fallback_file)
    assert dom_state(host, instance.domain_name) == "running"
    live_disk = instance.volumes.get(role=Volume.Role.ROOT)
    from lab import virsh

    blk = virsh(lab.hosts[1].uri_unix, "domblklist", instance.domain_name).stdout
    assert live_disk.path in blk and "overlay" not in blk  # pivoted back to its disk
    assert not any("overlay" in n for n in pool_volumes(host))

    # Cancelled half-way (after the snapshot, before the copy): merged back, nothing left.
    real = vbackup.snapshot_copy_backup

    def cancel_then_copy(*args, **kwargs):
        Job.objects.filter(kind="instance.backup", status="running").update(cancel_requested=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(vbackup, "snapshot_copy_backup", cancel_then_copy)
    before = pool_volumes(host)
    instance.refresh_from_db()
    job = run(BACKUP.start(user=member, target=instance))
    assert job.status == Job.Status.CANCELLED
    cancelled = Backup.objects.get(job=job)
    assert cancelled.state == Backup.State.FAILED and cancelled.error == "Cancelled"
    assert not cancelled.volumes.exists() and pool_volumes(host) == before
    blk = virsh(lab.hosts[1].uri_unix, "domblklist", instance.domain_name).stdout
    assert live_disk.path in blk and "overlay" not in blk
    assert dom_state(host, instance.domain_name) == "running"
    monkeypatch.undo()

    # A failure after the copy was made: no partial volume, the backup failed.
    def broken(*args, **kwargs):
        raise vbackup.VirtError("checksum stream broke")

    monkeypatch.setattr(vbackup, "volume_sha256", broken)
    before = pool_volumes(host)
    instance.refresh_from_db()
    job = run(BACKUP.start(user=member, target=instance))
    assert job.status == Job.Status.FAILED
    failed = Backup.objects.get(job=job)
    assert failed.state == Backup.State.FAILED and "checksum stream broke" in failed.error
    assert not failed.volumes.exists()
    assert pool_volumes(host) == before
    instance.refresh_from_db()
    assert instance.state == "running" and instance.current_job is None
    monkeypatch.undo()

    # Retention: keep the newest 2 ready backups of the instance.
    newest = take_backup(member, instance)
    files = {b.pk: b.volumes.get().name for b in Backup.objects.filter(state="ready")}
    assert backups_apply_retention(2) == 3  # the offline one, the cancelled and failed ones
    kept = set(Backup.objects.values_list("pk", flat=True))
    assert kept == {fallback.pk, newest.pk}
    left = pool_volumes(host)
    assert files[offline.pk] not in left and files[newest.pk] in left
    assert backups_apply_retention(2) == 0
    assert backups_apply_retention(0) == 0

    # Capture of a running instance: from a fresh point-in-time copy, removed afterwards.
    instance.refresh_from_db()
    job = run_ok(CAPTURE.start(user=member, target=instance, name="captured-live"))
    assert job.result["method"] == Backup.Method.PUSH
    live_image = Image.objects.get(pk=job.result["image"])
    assert live_image.status == "active" and pattern_present(settings.IMAGE_STORE / live_image.file)
    assert live_image.sha256 == file_sha256(settings.IMAGE_STORE / live_image.file)
    assert pool_volumes(host) == left
    assert dom_state(host, instance.domain_name) == "running"
