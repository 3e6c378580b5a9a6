"""cloudpanel.virt.storage against real libvirt: the test driver, and a lab host for uploads."""

from __future__ import annotations

import hashlib
import subprocess
import xml.etree.ElementTree as ET

import pytest

from cloudpanel.virt import NotFound, VirtError, storage

TEST_URI = "test:///default"
TEST_POOL = "default-pool"
MIB = 1024 * 1024


@pytest.fixture
def test_pool():
    created: list[str] = []
    yield created
    for name in created:
        storage.delete_volume(TEST_URI, TEST_POOL, name)


def test_volume_xml_is_built_structurally():
    xml = storage.volume_xml(
        name="a<b>&'\"",
        capacity_bytes=10,
        fmt="qcow2",
        backing_path="/p/x y.qcow2",
        backing_format="qcow2",
    )
    root = ET.fromstring(xml)
    assert root.findtext("name") == "a<b>&'\""
    assert root.find("capacity").get("unit") == "bytes" and root.findtext("capacity") == "10"
    assert root.find("target/format").get("type") == "qcow2"
    assert root.findtext("backingStore/path") == "/p/x y.qcow2"
    with pytest.raises(ValueError):
        storage.volume_xml(name="x", capacity_bytes=1, fmt="vmdk")


def test_create_find_info_delete(test_pool):
    test_pool.append("cp-vol.qcow2")
    info = storage.create_volume(TEST_URI, TEST_POOL, "cp-vol.qcow2", 3 * MIB, fmt="qcow2")
    assert info.name == "cp-vol.qcow2" and info.pool == TEST_POOL
    assert info.capacity_bytes == 3 * MIB and info.format == "qcow2"
    assert info.path.endswith("/cp-vol.qcow2")
    assert storage.find_volume_by_name(TEST_URI, TEST_POOL, "cp-vol.qcow2") == info
    assert storage.volume_info(TEST_URI, TEST_POOL, "cp-vol.qcow2") == info
    assert "cp-vol.qcow2" in {v.name for v in storage.list_volumes(TEST_URI, TEST_POOL)}
    assert storage.delete_volume(TEST_URI, TEST_POOL, "cp-vol.qcow2") is True
    assert storage.find_volume_by_name(TEST_URI, TEST_POOL, "cp-vol.qcow2") is None
    assert storage.delete_volume(TEST_URI, TEST_POOL, "cp-vol.qcow2") is False
    with pytest.raises(NotFound):
        storage.delete_volume(TEST_URI, TEST_POOL, "cp-vol.qcow2", missing_ok=False)
    with pytest.raises(NotFound):
        storage.volume_info(TEST_URI, TEST_POOL, "cp-vol.qcow2")


def test_missing_pool_is_not_a_missing_volume():
    with pytest.raises(NotFound, match="pool"):
        storage.find_volume_by_name(TEST_URI, "no-such-pool", "x")


def test_overlay_and_clone(test_pool):
    test_pool.extend(["cp-base.qcow2", "cp-overlay.qcow2", "cp-clone.raw"])
    base = storage.create_volume(TEST_URI, TEST_POOL, "cp-base.qcow2", 8 * MIB)
    overlay = storage.create_overlay_volume(
        TEST_URI, TEST_POOL, "cp-overlay.qcow2", base.path, "qcow2", 16 * MIB
    )
    assert overlay.format == "qcow2" and overlay.capacity_bytes == 16 * MIB
    assert overlay.backing_path == base.path and overlay.backing_format == "qcow2"
    clone = storage.clone_volume(TEST_URI, TEST_POOL, "cp-base.qcow2", "cp-clone.raw")
    assert clone.format == "raw" and clone.capacity_bytes == 8 * MIB
    with pytest.raises(VirtError):
        storage.create_volume(TEST_URI, TEST_POOL, "cp-base.qcow2", MIB)


# ------------------------------------------------------------------ uploads (real libvirtd)


@pytest.fixture
def lab_uri(lab):
    return lab.hosts[1].uri_unix


@pytest.fixture
def sparse_raw(tmp_path):
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as fh:
        fh.truncate(64 * MIB)
        fh.seek(10 * MIB)
        fh.write(b"data" * 4096)
        fh.seek(40 * MIB)
        fh.write(bytes(range(256)) * 8192)  # 2 MiB
    return path


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.libvirt
@pytest.mark.parametrize("sparse", [True, False])
def test_upload_stream_writes_the_exact_bytes(lab, lab_uri, sparse_raw, sparse):
    name = f"cp-upload-{int(sparse)}.raw"
    size = sparse_raw.stat().st_size
    storage.delete_volume(lab_uri, "default", name)
    storage.create_volume(lab_uri, "default", name, size, fmt="raw", allocation_bytes=0)
    seen: list[tuple[int, int]] = []
    try:
        result = storage.upload_volume(
            lab_uri,
            "default",
            name,
            sparse_raw,
            sparse=sparse,
            progress=lambda d, t: seen.append((d, t)),
        )
        assert result.sparse is sparse and result.bytes_sent == size
        assert seen[-1] == (size, size)
        assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
        info = storage.volume_info(lab_uri, "default", name)
        assert info.physical_bytes == size and info.capacity_bytes == size
        # Read it back through libvirt's own tools (the pool lives in the host's namespace).
        host = lab.hosts[1]
        copy = host.pool_dir / name
        assert _sha(copy) == _sha(sparse_raw)
        if sparse:
            assert info.allocation_bytes < 8 * MIB  # the holes stayed holes
    finally:
        storage.delete_volume(lab_uri, "default", name)


@pytest.mark.libvirt
def test_upload_aborted_by_the_progress_callback(lab_uri, tmp_path):
    path = tmp_path / "data.raw"
    path.write_bytes(b"x" * (5 * MIB))
    name = "cp-aborted.raw"
    storage.delete_volume(lab_uri, "default", name)
    storage.create_volume(lab_uri, "default", name, 5 * MIB, fmt="raw")

    def stop(done, total):
        if done >= 2 * MIB:
            raise RuntimeError("stop here")

    try:
        with pytest.raises(RuntimeError, match="stop here"):
            storage.upload_volume(lab_uri, "default", name, path, progress=stop)
        # The connection is still usable after the aborted stream.
        assert storage.find_volume_by_name(lab_uri, "default", name) is not None
    finally:
        storage.delete_volume(lab_uri, "default", name)


@pytest.mark.libvirt
def test_qcow2_upload_is_recognised_and_overlay_works(lab_uri, tmp_path):
    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    size = path.stat().st_size
    names = ["cp-base.qcow2", "cp-over.qcow2", "cp-raw-copy.raw"]
    for name in names:
        storage.delete_volume(lab_uri, "default", name)
    try:
        storage.create_volume(lab_uri, "default", names[0], size, fmt="raw")
        storage.upload_volume(lab_uri, "default", names[0], path)
        storage.pool_refresh(lab_uri, "default")
        base = storage.volume_info(lab_uri, "default", names[0])
        assert base.format == "qcow2" and base.capacity_bytes == 32 * MIB
        assert base.physical_bytes == size
        over = storage.create_overlay_volume(
            lab_uri, "default", names[1], base.path, "qcow2", 64 * MIB
        )
        assert over.backing_path == base.path and over.capacity_bytes == 64 * MIB
        copy = storage.clone_volume(lab_uri, "default", names[0], names[2], fmt="raw")
        assert copy.format == "raw" and copy.capacity_bytes == 32 * MIB
        assert storage.pool_path(lab_uri, "default") == base.path.rsplit("/", 1)[0]
    finally:
        for name in names:
            storage.delete_volume(lab_uri, "default", name)
