"""Image inspection: what qemu-img detects must match what was declared, and nothing more."""

from __future__ import annotations

import struct
import subprocess

import pytest

from images import inspect
from images.inspect import ImageRejected, inspect_image
from images.intake import image_upload
from images.models import Image

from .conftest import qemu_img, store_files


def written_qcow2(path):
    """A qcow2 with 8 MiB of data in it, so its tables point at real clusters."""
    qemu_img("create", "-f", "qcow2", str(path), "64M")
    subprocess.run(
        ["qemu-io", "-c", "write -P 0x5a 0 8M", str(path)], check=True, capture_output=True
    )
    return path


@pytest.fixture
def truncated_qcow2(tmp_path):
    """A download or copy cut in half: the header is fine, half the clusters are gone."""
    path = written_qcow2(tmp_path / "cut.qcow2")
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    return path


@pytest.fixture
def broken_l1_qcow2(tmp_path):
    """The first L1 entry points far past the end of the file."""
    path = written_qcow2(tmp_path / "l1.qcow2")
    with open(path, "r+b") as fh:
        (l1_offset,) = struct.unpack(">Q", fh.read(48)[40:48])
        fh.seek(l1_offset)
        fh.write(struct.pack(">Q", (1 << 63) | 0x7FFF0000))
    return path


@pytest.fixture
def broken_refcounts_qcow2(tmp_path):
    """The refcount table's first entry is zeroed: every cluster looks unreferenced."""
    path = written_qcow2(tmp_path / "rc.qcow2")
    with open(path, "r+b") as fh:
        (refcount_offset,) = struct.unpack(">Q", fh.read(56)[48:56])
        fh.seek(refcount_offset)
        fh.write(b"\0" * 8)
    return path


def test_qcow2_facts(qcow2_file):
    result = inspect_image(qcow2_file, "qcow2")
    assert result.detected_format == "qcow2"
    assert result.virtual_size == 64 * 1024 * 1024
    assert result.file_size == qcow2_file.stat().st_size


def test_iso_needs_the_iso9660_signature(iso_file, raw_file):
    assert inspect_image(iso_file, "iso").detected_format == "raw"
    with pytest.raises(ImageRejected, match="ISO 9660"):
        inspect_image(raw_file, "iso")


def test_qemu_img_is_run_without_a_format_with_force_share_and_limits(qcow2_file, monkeypatch):
    seen = []
    real_run = subprocess.run

    def spy(cmd, **kwargs):
        seen.append((cmd, kwargs))
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(inspect.subprocess, "run", spy)
    inspect_image(qcow2_file, "qcow2")
    (cmd, kwargs) = seen[0]
    qemu = cmd[cmd.index("qemu-img") :]
    assert qemu[:4] == ["qemu-img", "info", "--output=json", "--force-share"]
    assert "-f" not in qemu
    assert kwargs["timeout"] > 0
    if cmd[0] != "qemu-img":  # prlimit wraps it where installed
        assert any(a.startswith("--as=") for a in cmd) and "--cpu=30" in cmd
    # Then the check, with the format given (info already verified it), under the same limits.
    (cmd, kwargs) = seen[1]
    qemu = cmd[cmd.index("qemu-img") :]
    assert qemu[:5] == ["qemu-img", "check", "--output=json", "-f", "qcow2"]
    assert str(qcow2_file) == qemu[-1]
    assert kwargs["timeout"] > 0
    if cmd[0] != "qemu-img":
        assert any(a.startswith("--as=") for a in cmd) and "--cpu=30" in cmd
    assert len(seen) == 2


def test_backing_file_refused_from_the_header_before_qemu_img(backing_qcow2, monkeypatch):
    def never(path):
        raise AssertionError("qemu-img must not open an image with a backing file")

    monkeypatch.setattr(inspect, "qemu_img_info", never)
    with pytest.raises(ImageRejected, match="backing file"):
        inspect_image(backing_qcow2, "qcow2")


def test_backing_file_refused_from_qemu_img_too(backing_qcow2, monkeypatch):
    monkeypatch.setattr(inspect, "_check_qcow2_header", lambda path: None)
    with pytest.raises(ImageRejected, match="backing file"):
        inspect_image(backing_qcow2, "qcow2")


def test_external_data_file_refused(tmp_path, monkeypatch):
    path = tmp_path / "df.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}", str(path), "1M")
    with pytest.raises(ImageRejected, match="external data file"):
        inspect_image(path, "qcow2")
    monkeypatch.setattr(inspect, "_check_qcow2_header", lambda path: None)
    with pytest.raises(ImageRejected, match="external data file"):
        inspect_image(path, "qcow2")


def test_format_mismatches(qcow2_file, raw_file):
    with pytest.raises(ImageRejected, match="declared raw but it is qcow2"):
        inspect_image(qcow2_file, "raw")
    with pytest.raises(ImageRejected, match="declared qcow2 but it is raw"):
        inspect_image(raw_file, "qcow2")
    with pytest.raises(ImageRejected, match="not an ISO"):
        inspect_image(qcow2_file, "iso")


def test_other_formats_are_not_raw(tmp_path):
    path = tmp_path / "disk.vmdk"
    qemu_img("create", "-f", "vmdk", str(path), "1M")
    with pytest.raises(ImageRejected, match="it is vmdk"):
        inspect_image(path, "raw")


def test_limits(qcow2_file, settings):
    settings.IMAGE_MAX_VIRTUAL_SIZE = 1024 * 1024
    with pytest.raises(ImageRejected, match="virtual size"):
        inspect_image(qcow2_file, "qcow2")
    settings.IMAGE_MAX_VIRTUAL_SIZE = 2 * 1024**4
    settings.IMAGE_MAX_FILE_SIZE = 1024
    with pytest.raises(ImageRejected, match="larger than the limit"):
        inspect_image(qcow2_file, "qcow2")


def test_default_limits_without_settings(settings):
    del settings.IMAGE_MAX_VIRTUAL_SIZE
    del settings.IMAGE_MAX_FILE_SIZE
    from images.store import max_file_size, max_virtual_size

    assert max_virtual_size() == 2 * 1024**4
    assert max_file_size() == 100 * 1024**3


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.raw"
    empty.touch()
    with pytest.raises(ImageRejected, match="empty"):
        inspect_image(empty, "raw")


def test_inspection_has_a_timeout(qcow2_file, monkeypatch, settings):
    settings.IMAGE_INSPECT_TIMEOUT = 0.3
    monkeypatch.setattr(inspect, "_qemu_img_command", lambda path: ["sleep", "10"])
    with pytest.raises(ImageRejected, match="too long"):
        inspect_image(qcow2_file, "qcow2")


@pytest.mark.parametrize(
    "fixture", ["truncated_qcow2", "broken_l1_qcow2", "broken_refcounts_qcow2"]
)
def test_damaged_qcow2_is_refused_with_the_checks_message(fixture, request):
    path = request.getfixturevalue(fixture)
    inspect.qemu_img_info(path)  # what was accepted before: info alone sees nothing wrong
    with pytest.raises(ImageRejected, match=r"damaged: qemu-img check found \d+ corruption") as exc:
        inspect_image(path, "qcow2")
    assert "ERROR" in str(exc.value)  # qemu-img's first complaint, for the person


def test_healthy_qcow2_with_data_passes_the_check(tmp_path):
    path = written_qcow2(tmp_path / "ok.qcow2")
    assert inspect_image(path, "qcow2").virtual_size == 64 * 1024 * 1024


def test_leaked_clusters_alone_are_accepted(tmp_path):
    """Leaks (exit status 3) waste space but harm nothing: not a reason to refuse."""
    path = written_qcow2(tmp_path / "leaky.qcow2")
    cluster = path.stat().st_size // 65536  # the next cluster: counted in use, never referenced
    with open(path, "r+b") as fh:
        (refcount_table,) = struct.unpack(">Q", fh.read(56)[48:56])
        fh.seek(refcount_table)
        (block,) = struct.unpack(">Q", fh.read(8))
        fh.seek(block + 2 * cluster)  # 16-bit refcounts
        fh.write(struct.pack(">H", 1))
        fh.seek(0, 2)
        fh.write(b"\0" * 65536)
    leak = subprocess.run(
        ["qemu-img", "check", "--output=json", "-f", "qcow2", str(path)], capture_output=True
    )
    assert leak.returncode == 3 and b'"leaks": 1' in leak.stdout
    inspect_image(path, "qcow2")


def test_only_qcow2_is_checked(raw_file, monkeypatch):
    def never(path):
        raise AssertionError("qemu-img check is for qcow2 only")

    monkeypatch.setattr(inspect, "qemu_img_check", never)
    inspect_image(raw_file, "raw")


def test_the_check_has_a_timeout(qcow2_file, monkeypatch, settings):
    settings.IMAGE_INSPECT_TIMEOUT = 0.3
    monkeypatch.setattr(inspect, "_qemu_img_check_command", lambda path: ["sleep", "10"])
    with pytest.raises(ImageRejected, match="too long"):
        inspect_image(qcow2_file, "qcow2")


@pytest.mark.django_db
def test_damaged_qcow2_upload_is_refused_by_the_service(admin_user, truncated_qcow2):
    from django.core.exceptions import ValidationError

    with open(truncated_qcow2, "rb") as fh, pytest.raises(ValidationError) as exc:
        image_upload(name="cut", disk_format="qcow2", user=admin_user, fileobj=fh)
    assert "qemu-img check found" in exc.value.message_dict["file"][0]
    assert not Image.objects.exists() and store_files() == []


@pytest.mark.django_db
def test_damaged_qcow2_upload_is_400_on_the_api(api_client, broken_l1_qcow2, tmp_path):
    with open(broken_l1_qcow2, "rb") as fh:
        response = api_client.post(
            "/api/v1/images/",
            {"name": "l1", "disk_format": "qcow2", "file": fh},
            format="multipart",
        )
    assert response.status_code == 400
    assert "qemu-img check found" in response.json()["errors"]["file"][0]
    assert not Image.objects.exists() and store_files() == []
    healthy = written_qcow2(tmp_path / "ok.qcow2")
    with open(healthy, "rb") as fh:
        response = api_client.post(
            "/api/v1/images/",
            {"name": "ok", "disk_format": "qcow2", "file": fh},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    assert Image.objects.get().status == "active"
