"""Image inspection: what qemu-img detects must match what was declared, and nothing more."""

from __future__ import annotations

import subprocess

import pytest

from images import inspect
from images.inspect import ImageRejected, inspect_image

from .conftest import qemu_img


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
