"""Backups on the lab: the instance fixtures, and helpers to make and inspect instances."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.instances.conftest import (  # noqa: F401 - fixtures
    _in_memory_channels,
    qcow2_image,
    tiny_flavor,
)


@pytest.fixture
def member(db, member_user, default_project):
    from cloudpanel.projects.services import membership_set

    membership_set(project=default_project, user=member_user)
    return member_user


def qemu_io(path, command: str, *, read_only: bool = False) -> subprocess.CompletedProcess:
    """qemu-io on a lab host's volume from outside its namespace: a backing file named by
    the host's path (/var/lib/libvirt/images/...) is opened beside the file instead."""
    path = Path(path)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", "--force-share", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    opts = f"driver=qcow2,file.driver=file,file.filename={path}"
    backing = info.get("backing-filename")
    if backing:
        outside = path.parent / Path(backing).name
        fmt = info.get("backing-filename-format") or "qcow2"
        opts += f",backing.driver={fmt},backing.file.driver=file,backing.file.filename={outside}"
    args = ["qemu-io", *(["-r"] if read_only else []), "--image-opts", "-c", command, opts]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def pattern_present(path, byte: int = 0xAB) -> bool:
    proc = qemu_io(path, f"read -P {byte:#x} 0 1M", read_only=True)
    return proc.returncode == 0 and "Pattern verification failed" not in proc.stdout


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
