"""Cold migration on the real lab: a shut-off instance moves lab1 (TCG) -> lab0 (KVM) and back;
its disks arrive thin and intact, nothing stays on the source, the database agrees; a failure
or a cancellation half-way leaves it whole on the source."""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import job_reap_stale
from cloudpanel.virt import storage
from cloudpanel.virt.volume_copy import copy_volume
from images.replicas import image_ensure_replica
from instances.models import Instance, Volume
from instances.operations import cold_migrate
from instances.operations.cold_migrate import COLD_MIGRATE
from lab import virsh
from tests.instances.conftest import dom_state, domain_names, pool_volumes, run, run_ok, uri_of

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]

MIB = 1024 * 1024


def no_backing(path) -> str:
    """The qcow2 file alone: its backing file's path is only valid inside the lab host."""
    return "json:" + json.dumps(
        {"driver": "qcow2", "file": {"driver": "file", "filename": str(path)}, "backing": None}
    )


def qemu_io(path, command: str) -> str:
    proc = subprocess.run(
        ["qemu-io", "-c", command, no_backing(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "Pattern verification failed" not in proc.stdout, (
        proc.stdout,
        proc.stderr,
    )
    return proc.stdout


def qemu_img_check(path) -> None:
    proc = subprocess.run(["qemu-img", "check", no_backing(path)], capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "No errors were found" in proc.stdout, proc.stdout


def root_of(instance) -> Volume:
    return instance.volumes.get(role=Volume.Role.ROOT)


def domain_xml(host, name: str) -> ET.Element:
    return ET.fromstring(virsh(uri_of(host), "dumpxml", "--inactive", name).stdout)


def assert_on(instance, host, other, lab, index: int) -> None:
    """The instance, its rows, its domain and its volumes are on `host` only."""
    instance.refresh_from_db()
    assert instance.host_id == host.pk
    assert instance.current_job_id is None
    assert instance.state == Instance.State.SHUTOFF
    assert dom_state(host, instance.domain_name) == "shut off"
    assert instance.domain_name not in domain_names(other)
    names = {v.name for v in instance.volumes.all()}
    assert len(names) == 2  # root and seed
    assert names <= pool_volumes(host)
    assert not names & pool_volumes(other)
    xml = domain_xml(host, instance.domain_name)
    sources = {d.find("source").get("file") for d in xml.findall("devices/disk")}
    for volume in instance.volumes.all():
        assert volume.host_id == host.pk
        assert volume.path in sources
        assert (lab.hosts[index].pool_dir / volume.name).exists()


def migrate(user, instance, host) -> tuple[Job, float]:
    instance.refresh_from_db()
    started = time.monotonic()
    job = run_ok(COLD_MIGRATE.start(user=user, target=instance, host=host))
    return job, time.monotonic() - started


def test_cold_migration_there_and_back_keeps_data_and_thin_disks(
    lab, lab_hosts, admin_user, shutoff_instance
):
    lab0, lab1 = lab_hosts
    instance = shutoff_instance
    root = root_of(instance)
    qemu_io(lab.hosts[1].pool_dir / root.name, "write -P 0xab 0 1M")
    before = storage.volume_info(uri_of(lab1), root.pool, root.name)

    job, seconds = migrate(admin_user, instance, lab0)

    assert_on(instance, lab0, lab1, lab, 0)
    assert domain_xml(lab0, instance.domain_name).get("type") == "qemu"  # as defined on lab1
    copy = storage.volume_info(uri_of(lab0), root.pool, root.name)
    assert copy.capacity_bytes == before.capacity_bytes
    assert copy.format == "qcow2"
    assert copy.backing_path == before.backing_path  # the image copy on lab0, same path
    # Thin: it holds what the source held (the 1 MiB written and qcow2 metadata), no more.
    assert copy.allocation_bytes <= before.allocation_bytes + MIB
    assert copy.allocation_bytes < copy.capacity_bytes / 50
    copied_file = lab.hosts[0].pool_dir / root.name
    qemu_img_check(copied_file)
    qemu_io(copied_file, "read -P 0xab 0 1M")
    reported = {v["name"]: v for v in job.result["volumes"]}[root.name]
    assert reported["allocation_bytes"] == copy.allocation_bytes
    print(
        f"\ncold migration lab1 -> lab0: {seconds:.2f} s (job says {job.result['seconds']} s); "
        f"root copy {copy.allocation_bytes} of {copy.capacity_bytes} bytes allocated "
        f"({100 * copy.allocation_bytes / copy.capacity_bytes:.2f} %), source had "
        f"{before.allocation_bytes}"
    )

    # Back through the API: H1's migrate action sends a shut-off instance here.
    client = APIClient()
    client.force_authenticate(admin_user)
    started = time.monotonic()
    response = client.post(
        f"/api/v1/instances/{instance.pk}/migrate/", {"host": lab1.pk}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["kind"] == "instance.cold-migrate"
    job = run_ok(Job.objects.get(pk=response.json()["id"]))
    seconds = time.monotonic() - started

    assert_on(instance, lab1, lab0, lab, 1)
    back = lab.hosts[1].pool_dir / root.name
    qemu_img_check(back)
    qemu_io(back, "read -P 0xab 0 1M")
    assert not job.result["leftovers"]
    print(f"cold migration lab0 -> lab1: {seconds:.2f} s")


def test_a_cancellation_between_volumes_leaves_the_instance_on_its_source(
    lab, lab_hosts, admin_user, shutoff_instance, monkeypatch
):
    lab0, lab1 = lab_hosts
    instance = shutoff_instance
    calls = []
    real_copy = cold_migrate.copy_volume

    def copy_then_cancel(*args, **kwargs):
        info = real_copy(*args, **kwargs)
        calls.append(info.name)
        Job.objects.filter(pk=instance.current_job_id).update(cancel_requested=True)
        return info

    monkeypatch.setattr(cold_migrate, "copy_volume", copy_then_cancel)
    instance.refresh_from_db()
    job = COLD_MIGRATE.start(user=admin_user, target=instance, host=lab0)
    instance.refresh_from_db()
    job = run(job)

    assert job.status == Job.Status.CANCELLED, (job.error, job.log)
    assert len(calls) == 1  # the first disk had reached lab0
    assert calls[0] not in pool_volumes(lab0)
    assert_on(instance, lab1, lab0, lab, 1)


def test_a_failed_copy_half_way_undoes_the_target_and_spares_what_it_did_not_make(
    lab, lab_hosts, admin_user, shutoff_instance, monkeypatch
):
    lab0, lab1 = lab_hosts
    instance = shutoff_instance
    names = [v.name for v in instance.volumes.order_by("id")]
    real_copy = cold_migrate.copy_volume

    def copy_then_block(*args, **kwargs):
        info = real_copy(*args, **kwargs)
        # Someone else's volume appears where the next disk would go.
        storage.create_volume(uri_of(lab0), "default", names[1], MIB, fmt="raw")
        return info

    monkeypatch.setattr(cold_migrate, "copy_volume", copy_then_block)
    instance.refresh_from_db()
    job = run(COLD_MIGRATE.start(user=admin_user, target=instance, host=lab0))

    assert job.status == Job.Status.FAILED
    assert "already exists" in job.error
    assert "lab" not in job.public_error
    on_target = pool_volumes(lab0)
    assert names[0] not in on_target  # the copy it made is gone
    assert names[1] in on_target  # the volume it did not make is left alone
    storage.delete_volume(uri_of(lab0), "default", names[1])
    assert_on(instance, lab1, lab0, lab, 1)


def test_an_inactive_target_pool_fails_and_leaves_everything_on_the_source(
    lab, lab_hosts, admin_user, shutoff_instance
):
    lab0, lab1 = lab_hosts
    instance = shutoff_instance
    job = COLD_MIGRATE.start(user=admin_user, target=instance, host=lab0)
    virsh(uri_of(lab0), "pool-destroy", "default")  # after the checks: the copy meets it
    try:
        job = run(job)
    finally:
        virsh(uri_of(lab0), "pool-start", "default")
    assert job.status == Job.Status.FAILED
    assert_on(instance, lab1, lab0, lab, 1)
    # And it still moves once the pool is back.
    run_ok(COLD_MIGRATE.start(user=admin_user, target=instance, host=lab0))
    assert_on(instance, lab0, lab1, lab, 0)


def test_a_worker_dying_mid_copy_leaves_the_target_cleaned_by_the_reaper(
    lab, lab_hosts, admin_user, shutoff_instance
):
    lab0, lab1 = lab_hosts
    instance = shutoff_instance
    job = COLD_MIGRATE.start(user=admin_user, target=instance, host=lab0)
    # What a worker that died after its first disk left behind: the image's copy under the
    # disk (its qcow2 backing file), then the disk.
    image_ensure_replica(image=instance.image, host=lab0)
    root = root_of(instance)
    copy_volume(uri_of(lab1), root.pool, root.name, uri_of(lab0), root.pool, root.name)
    long_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING, started_at=long_ago, heartbeat_at=long_ago
    )

    assert job_reap_stale() == [job.pk]

    assert root.name not in pool_volumes(lab0)
    instance.refresh_from_db()
    assert "was abandoned" in instance.state_reason
    assert_on(instance, lab1, lab0, lab, 1)


def test_disks_on_shared_storage_are_not_copied_and_stay(
    lab, lab_hosts, admin_user, make_shutoff_instance
):
    lab0, lab1 = lab_hosts
    lab1.default_pool = "shared"  # its instances' disks and image copies go to shared storage
    lab1.save()
    instance = make_shutoff_instance("onshared")
    root = root_of(instance)
    assert root.pool == "shared"
    shared_file = lab.shared_dir / root.name
    qemu_io(shared_file, "write -P 0xab 0 1M")
    inode = shared_file.stat().st_ino

    job, _ = migrate(admin_user, instance, lab0)

    instance.refresh_from_db()
    assert instance.host_id == lab0.pk
    assert dom_state(lab0, instance.domain_name) == "shut off"
    assert instance.domain_name not in domain_names(lab1)
    # The very same files, still there, now the instance's disks on lab0.
    assert shared_file.stat().st_ino == inode
    qemu_io(shared_file, "read -P 0xab 0 1M")
    for volume in instance.volumes.all():
        assert (volume.host_id, volume.pool) == (lab0.pk, "shared")
        assert (lab.shared_dir / volume.name).exists()
    sources = {
        d.find("source").get("file")
        for d in domain_xml(lab0, instance.domain_name).findall("devices/disk")
    }
    assert {v.path for v in instance.volumes.all()} <= sources
    assert not job.result["leftovers"]
