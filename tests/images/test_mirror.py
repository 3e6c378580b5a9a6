"""Copies of images in hosts' pools: through libvirt streams, tracked, idempotent, cleaned up."""

from __future__ import annotations

import contextlib
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from cloudpanel.errors import Conflict
from cloudpanel.jobs.models import Job
from cloudpanel.virt import VirtError, storage
from hosts.connection import connection_uri
from images import replicas
from images.models import Image, ImageReplica
from images.operations import MIRROR

from .conftest import run_job

pytestmark = [pytest.mark.django_db, pytest.mark.libvirt]

MIB = 1024 * 1024


@pytest.fixture
def image(api_client, tmp_path):
    """An uploaded qcow2 with 3 MiB of data (several stream chunks)."""
    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "128M"], check=True)
    subprocess.run(
        ["qemu-io", "-c", "write -P 0x42 0 3M", str(path)], check=True, capture_output=True
    )
    with open(path, "rb") as fh:
        response = api_client.post(
            "/api/v1/images/",
            {"name": "base", "disk_format": "qcow2", "file": fh},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    created = Image.objects.get(pk=response.json()["id"])
    yield created
    for replica in ImageReplica.objects.filter(image_id=created.id).select_related("host"):
        with contextlib.suppress(VirtError):
            storage.delete_volume(connection_uri(replica.host), replica.pool, replica.volume)


def mirror(api_client, image, host, pool="default"):
    response = api_client.post(
        f"/api/v1/images/{image.id}/mirror/", {"host": host.id, "pool": pool}, format="json"
    )
    assert response.status_code == 202, response.content
    return run_job(response.json()["id"])


def test_mirror_to_lab1_then_again_is_a_no_op(api_client, lab_hosts, image):
    lab1 = lab_hosts[1]
    uri = connection_uri(lab1)
    name = replicas.replica_volume_name(image)
    assert name == f"image-{image.id}-{image.sha256[:12]}.qcow2"

    job = mirror(api_client, image, lab1)
    assert job.status == "succeeded", (job.error, job.log)
    assert job.result["copied"] is True and job.progress == 100
    assert "Copying base to lab1/default" in job.log

    vol = storage.volume_info(uri, "default", name)
    assert vol.physical_bytes == image.file_size
    assert vol.capacity_bytes == image.virtual_size == 128 * MIB
    assert vol.format == "qcow2"
    replica = ImageReplica.objects.get(image=image, host=lab1, pool="default")
    assert replica.status == "active" and replica.sha256 == image.sha256
    assert replica.volume == name and replica.path == vol.path

    again = mirror(api_client, image, lab1)
    assert again.status == "succeeded"
    assert again.result["copied"] is False
    assert "nothing copied" in again.log
    assert storage.volume_info(uri, "default", name) == vol
    assert ImageReplica.objects.filter(image=image).count() == 1
    # lab0 does not have it.
    assert storage.find_volume_by_name(connection_uri(lab_hosts[0]), "default", name) is None

    listed = api_client.get(f"/api/v1/images/{image.id}/replicas/").json()
    assert [(r["host_name"], r["pool"], r["status"]) for r in listed] == [
        ("lab1", "default", "active")
    ]


def test_ensure_replica_for_provisioning(lab_hosts, image):
    """What the instance code calls inside its own job: synchronous and idempotent."""
    host = lab_hosts[0]
    first = replicas.image_ensure_replica(image=image, host=host)
    assert first.copied is True and first.status == "active"
    second = replicas.image_ensure_replica(image=image, host=host)
    assert second.copied is False and second.pk == first.pk
    info = storage.volume_info(connection_uri(host), "default", first.volume)
    assert info.path == first.path and info.physical_bytes == image.file_size


def test_volume_removed_behind_our_back_is_copied_again(lab_hosts, image):
    host = lab_hosts[1]
    replica = replicas.image_ensure_replica(image=image, host=host)
    storage.delete_volume(connection_uri(host), "default", replica.volume)
    again = replicas.image_ensure_replica(image=image, host=host)
    assert again.copied is True
    assert storage.find_volume_by_name(connection_uri(host), "default", replica.volume)


def test_failure_half_way_deletes_the_partial_volume(api_client, lab_hosts, image, monkeypatch):
    host = lab_hosts[1]
    real_upload = storage.upload_volume

    def failing_upload(uri, pool, name, source, *, progress=None, sparse=True):
        def explode(done, total):
            if progress:
                progress(done, total)
            if done >= MIB:
                raise OSError("disk went away half-way")

        return real_upload(uri, pool, name, source, progress=explode, sparse=sparse)

    monkeypatch.setattr(storage, "upload_volume", failing_upload)
    job = mirror(api_client, image, host)
    assert job.status == "failed"
    assert "disk went away half-way" in job.error
    name = replicas.replica_volume_name(image)
    assert storage.find_volume_by_name(connection_uri(host), "default", name) is None
    replica = ImageReplica.objects.get(image=image, host=host)
    assert replica.status == "error" and "half-way" in replica.error

    # The next attempt starts over and succeeds.
    monkeypatch.setattr(storage, "upload_volume", real_upload)
    job = mirror(api_client, image, host)
    assert job.status == "succeeded" and job.result["copied"] is True
    replica.refresh_from_db()
    assert replica.status == "active" and replica.error == ""


def test_cancelled_copy_leaves_no_volume(lab_hosts, image, monkeypatch):
    from cloudpanel.jobs.services import JobContext, job_create

    host = lab_hosts[1]
    job = job_create(
        kind=MIRROR.kind,
        target_type="image",
        target_id=image.id,
        params={"host": host.id, "pool": "default"},
        exclusive=False,
        enqueue=False,
    )
    calls = {"n": 0}

    def cancelled(self):
        calls["n"] += 1
        return calls["n"] > 2  # cancel once the copy is under way

    monkeypatch.setattr(JobContext, "cancelled", cancelled)
    monkeypatch.setattr(replicas, "PROGRESS_EVERY", 0)
    job = run_job(job.id)
    assert job.status == "cancelled"
    name = replicas.replica_volume_name(image)
    assert storage.find_volume_by_name(connection_uri(host), "default", name) is None
    assert ImageReplica.objects.get(image=image, host=host).status == "error"


def test_missing_pool_fails_the_job(api_client, lab_hosts, image):
    job = mirror(api_client, image, lab_hosts[1], pool="no-such-pool")
    assert job.status == "failed"
    assert "no-such-pool" in job.error
    assert ImageReplica.objects.get(image=image, pool="no-such-pool").status == "error"


def test_a_copy_without_a_pool_goes_to_the_hosts_default_pool(lab_hosts, image):
    host = lab_hosts[1]
    host.default_pool = "no-such-pool"  # so the pool the copy went for shows in the error
    host.save()
    with pytest.raises(VirtError, match="no-such-pool"):
        replicas.image_ensure_replica(image=image, host=host)
    assert ImageReplica.objects.get(image=image, host=host).pool == "no-such-pool"


def test_a_fresh_copy_in_progress_is_waited_for(lab_hosts, image):
    host = lab_hosts[1]
    ImageReplica.objects.create(
        image=image, host=host, pool="default", volume="x", status=ImageReplica.Status.COPYING
    )
    with pytest.raises(Conflict, match="Timed out waiting"):
        replicas.image_ensure_replica(image=image, host=host, wait_timeout=0.5)


def test_an_abandoned_copy_is_taken_over(lab_hosts, image):
    host = lab_hosts[1]
    stale = ImageReplica.objects.create(
        image=image, host=host, pool="default", volume="x", status=ImageReplica.Status.COPYING
    )
    ImageReplica.objects.filter(pk=stale.pk).update(
        updated_at=timezone.now() - timedelta(minutes=10)
    )
    replica = replicas.image_ensure_replica(image=image, host=host)
    assert replica.pk == stale.pk and replica.copied is True and replica.status == "active"


def test_reaped_mirror_job_marks_the_replica(lab_hosts, image):
    from cloudpanel.jobs.services import job_reap_stale

    host = lab_hosts[1]
    ImageReplica.objects.create(
        image=image, host=host, pool="default", volume="x", status=ImageReplica.Status.COPYING
    )
    Job.objects.create(
        kind=MIRROR.kind,
        target_type="image",
        target_id=image.id,
        exclusive=False,
        status="running",
        heartbeat_at=timezone.now() - timedelta(minutes=5),
        params={"host": host.id, "pool": "default"},
    )
    job_reap_stale()
    assert ImageReplica.objects.get(image=image, host=host).status == "error"


def test_delete_image_removes_copies_on_hosts(api_client, lab_hosts, image):
    replica = replicas.image_ensure_replica(image=image, host=lab_hosts[0])
    uri = connection_uri(lab_hosts[0])
    assert storage.find_volume_by_name(uri, "default", replica.volume)
    assert api_client.delete(f"/api/v1/images/{image.id}/").status_code == 204
    assert storage.find_volume_by_name(uri, "default", replica.volume) is None


def test_image_without_checksum_gets_one(lab_hosts, image):
    Image.objects.filter(pk=image.pk).update(sha256="")
    image.refresh_from_db()
    replica = replicas.image_ensure_replica(image=image, host=lab_hosts[1])
    image.refresh_from_db()
    assert len(image.sha256) == 64 and replica.sha256 == image.sha256


def test_a_copy_in_a_pool_both_hosts_see_serves_both(lab, lab_hosts, image):
    """Pool 'shared' is one directory for both lab hosts: the second host uses the first's
    copy instead of replacing the file under it."""
    first = replicas.image_ensure_replica(image=image, host=lab_hosts[0], pool="shared")
    try:
        assert first.copied
        inode = (lab.shared_dir / first.volume).stat().st_ino
        second = replicas.image_ensure_replica(image=image, host=lab_hosts[1], pool="shared")
        assert not second.copied and second.status == "active" and second.path == first.path
        assert (lab.shared_dir / first.volume).stat().st_ino == inode  # never rewritten
    finally:
        storage.delete_volume(connection_uri(lab_hosts[0]), "shared", first.volume)
