"""A replica on a host holds the image's bytes, read back through libvirt and compared.

The copy goes through libvirt's volume upload stream in chunks, with holes sent as holes;
the size check of the copy cannot see a chunk sent wrong, twice, or out of place. Here the
volume is downloaded again with virsh (libvirt's own client, not the panel's code) and its
sha256 compared with the image's.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from cloudpanel.virt import VirtError, storage
from hosts.connection import connection_uri
from images.models import Image, ImageReplica

from .conftest import qemu_img, run_job

pytestmark = [pytest.mark.django_db, pytest.mark.libvirt]

MIB = 1024 * 1024


def _random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)  # no two chunks alike, the same on every run


def _raw_with_a_hole(path: Path) -> Path:
    """Data, a 2 MiB hole, data: several stream chunks, and a hole the copy skips."""
    with open(path, "wb") as fh:
        fh.write(_random_bytes(2 * MIB + 12345, seed=1))
        fh.seek(4 * MIB)
        fh.write(_random_bytes(MIB, seed=2))
        fh.truncate(6 * MIB)
    return path


def _qcow2_with_data(path: Path, tmp_path: Path) -> Path:
    raw = tmp_path / "content.raw"
    raw.write_bytes(_random_bytes(3 * MIB, seed=3))
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    return path


def _upload(api_client, path: Path, disk_format: str) -> Image:
    with open(path, "rb") as fh:
        response = api_client.post(
            "/api/v1/images/",
            {"name": f"content-{disk_format}", "disk_format": disk_format, "file": fh},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    return Image.objects.get(pk=response.json()["id"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.parametrize("disk_format", ["raw", "qcow2"])
def test_the_replica_holds_the_images_bytes(api_client, lab_hosts, tmp_path, disk_format):
    source = tmp_path / f"source.{disk_format}"
    if disk_format == "raw":
        _raw_with_a_hole(source)
    else:
        _qcow2_with_data(source, tmp_path)
    image = _upload(api_client, source, disk_format)
    assert image.sha256 == _sha256(source)
    host = lab_hosts[1]
    uri = connection_uri(host)
    try:
        response = api_client.post(
            f"/api/v1/images/{image.id}/mirror/", {"host": host.id}, format="json"
        )
        assert response.status_code == 202, response.content
        job = run_job(response.json()["id"])
        assert job.status == "succeeded", (job.error, job.log)
        replica = ImageReplica.objects.get(image=image, host=host)

        copy = tmp_path / "downloaded"
        subprocess.run(
            ["virsh", "-q", "-c", uri, "vol-download", "--pool", replica.pool, replica.volume,
             str(copy)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert copy.stat().st_size == image.file_size
        assert _sha256(copy) == image.sha256 == replica.sha256
    finally:
        for replica in ImageReplica.objects.filter(image_id=image.id):
            with contextlib.suppress(VirtError):
                storage.delete_volume(uri, replica.pool, replica.volume)
