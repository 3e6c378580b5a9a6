"""copy_volume between two real lab hosts: sparse (holes stay holes), byte-exact, and a
cancellation or a refused target leaves no partial volume."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from cloudpanel.virt import AlreadyExists, storage
from cloudpanel.virt.volume_copy import CopyCancelled, copy_volume

pytestmark = pytest.mark.libvirt

MIB = 1024 * 1024
GIB = 1024 * MIB


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_sparse_raw_volume_arrives_identical_and_thin(lab):
    src, dst = lab.hosts[1], lab.hosts[0]
    size = 256 * MIB
    storage.create_volume(src.uri_unix, "default", "sparse.raw", size, fmt="raw")
    try:
        path = src.pool_dir / "sparse.raw"
        with open(path, "r+b") as fh:  # two islands of data among holes
            fh.seek(3 * MIB)
            fh.write(b"\x5a" * MIB)
            fh.seek(200 * MIB)
            fh.write(b"\xa5" * (MIB // 2))
        storage.pool_refresh(src.uri_unix, "default")
        seen = []
        info = copy_volume(
            src.uri_unix, "default", "sparse.raw", dst.uri_tcp, "default", "sparse.raw",
            fmt="raw", progress=lambda done, total: seen.append((done, total)),
        )  # fmt: skip
        copied = dst.pool_dir / "sparse.raw"
        assert info.capacity_bytes == size
        assert info.allocation_bytes < 4 * MIB
        assert copied.stat().st_blocks * 512 < 4 * MIB
        assert digest(copied) == digest(path)
        assert seen[-1] == (size, size)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    finally:
        storage.delete_volume(src.uri_unix, "default", "sparse.raw")
        storage.delete_volume(dst.uri_tcp, "default", "sparse.raw")


def test_a_qcow2_volume_passes_qemu_img_check(lab):
    src, dst = lab.hosts[0], lab.hosts[1]
    storage.create_volume(src.uri_tcp, "default", "q.qcow2", GIB, fmt="qcow2")
    try:
        subprocess.run(
            ["qemu-io", "-c", "write -P 0x11 100M 2M", str(src.pool_dir / "q.qcow2")],
            check=True, capture_output=True,
        )  # fmt: skip
        info = copy_volume(src.uri_tcp, "default", "q.qcow2", dst.uri_unix, "default", "q.qcow2")
        assert info.format == "qcow2"
        assert info.allocation_bytes < 4 * MIB
        out = subprocess.run(
            ["qemu-img", "check", str(dst.pool_dir / "q.qcow2")], capture_output=True, text=True
        )
        assert out.returncode == 0 and "No errors" in out.stdout, out
        read = subprocess.run(
            ["qemu-io", "-c", "read -P 0x11 100M 2M", str(dst.pool_dir / "q.qcow2")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert "Pattern verification failed" not in read.stdout and read.returncode == 0
    finally:
        storage.delete_volume(src.uri_tcp, "default", "q.qcow2")
        storage.delete_volume(dst.uri_unix, "default", "q.qcow2")


def test_cancelled_mid_stream_or_refused_leaves_no_partial_volume(lab):
    src, dst = lab.hosts[0], lab.hosts[1]
    storage.create_volume(
        src.uri_tcp, "default", "c.raw", 64 * MIB, fmt="raw", allocation_bytes=None
    )
    try:
        with open(src.pool_dir / "c.raw", "r+b") as fh:
            for offset in range(0, 64 * MIB, 4 * MIB):
                fh.seek(offset)
                fh.write(b"\x01" * MIB)
        storage.pool_refresh(src.uri_tcp, "default")
        seen = []
        with pytest.raises(CopyCancelled):
            copy_volume(
                src.uri_tcp, "default", "c.raw", dst.uri_unix, "default", "c.raw", fmt="raw",
                progress=lambda done, total: seen.append(done), cancelled=lambda: bool(seen),
            )  # fmt: skip
        assert 0 < seen[-1] < 64 * MIB  # it stopped part-way
        assert storage.find_volume_by_name(dst.uri_unix, "default", "c.raw") is None

        storage.create_volume(dst.uri_unix, "default", "c.raw", MIB, fmt="raw")
        with pytest.raises(AlreadyExists):
            copy_volume(
                src.uri_tcp, "default", "c.raw", dst.uri_unix, "default", "c.raw", fmt="raw"
            )
        # Not its volume: left as it was.
        assert storage.volume_info(dst.uri_unix, "default", "c.raw").capacity_bytes == MIB
    finally:
        storage.delete_volume(src.uri_tcp, "default", "c.raw")
        storage.delete_volume(dst.uri_unix, "default", "c.raw")
