"""Fixtures for disk mirroring tests: an instance running on the lab's TCG host, and helpers
that look at its disks from outside (virsh, qemu-img, qemu-io)."""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from instances import operations
from instances.models import Instance
from lab import virsh
from tests.instances.conftest import (  # noqa: F401 - fixtures
    _in_memory_channels,
    qcow2_image,
    run,
    run_ok,
    tiny_flavor,
    uri_of,
)

PATTERN = "0xcd"


IMAGE_PATTERN, IMAGE_OFFSET = "0xab", 1024 * 1024


@pytest.fixture
def running_instance(lab_hosts, admin_user, qcow2_image, tiny_flavor, settings):  # noqa: F811
    """make(name) -> an instance running on lab1 (TCG), made by the panel; deleted after.
    Its image holds IMAGE_PATTERN at IMAGE_OFFSET: data only the backing file has."""
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {IMAGE_PATTERN} {IMAGE_OFFSET} 64k",
         str(settings.IMAGE_STORE / qcow2_image.file)],
        check=True, capture_output=True,
    )  # fmt: skip
    qcow2_image.file_size = (settings.IMAGE_STORE / qcow2_image.file).stat().st_size
    qcow2_image.save(update_fields=["file_size"])
    made: list[Instance] = []

    def make(name: str = "mirror-vm") -> Instance:
        job = run_ok(
            operations.CREATE.start(
                user=admin_user, name=name, image=qcow2_image, flavor=tiny_flavor, host=lab_hosts[1]
            )
        )
        instance = Instance.objects.select_related("host").get(pk=job.target_id)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        if Instance.objects.filter(pk=instance.pk).exists():
            instance.refresh_from_db()
            run(operations.DELETE.start(user=admin_user, target=instance))


def live_xml(instance, *, inactive: bool = False) -> ET.Element:
    args = ["dumpxml", instance.domain_name] + (["--inactive"] if inactive else [])
    return ET.fromstring(virsh(uri_of(instance.host), *args).stdout)


def disk_source(instance, disk: str = "vda", *, inactive: bool = False) -> str:
    for el in live_xml(instance, inactive=inactive).findall("devices/disk"):
        if el.find("target").get("dev") == disk:
            return el.find("source").get("file")
    raise AssertionError(f"no disk {disk}")


def blockjob_info(instance, disk: str = "vda") -> str:
    """What virsh says of the disk's block job ('Block Copy: [100 %]'; nothing when none)."""
    proc = virsh(uri_of(instance.host), "blockjob", instance.domain_name, disk, "--info")
    return (proc.stdout + proc.stderr).strip()


def hmp(instance, command: str) -> str:
    proc = virsh(
        uri_of(instance.host), "qemu-monitor-command", instance.domain_name, "--hmp", command
    )
    return proc.stdout.strip()


def disk_device(instance) -> str:
    """The qdev path of vda's block backend, from `info block` ('Attached to:')."""
    out = hmp(instance, "info block")
    match = re.search(r"Attached to:\s+(\S+virtio-disk0\S*)", out)
    assert match, out
    return match.group(1)


def guest_write(instance, offset: int = 0, length: str = "64k") -> None:
    """Write the pattern to the running disk as the guest would (through its device)."""
    out = hmp(
        instance, f'qemu-io -d {disk_device(instance)} "write -P {PATTERN} {offset} {length}"'
    )
    assert "wrote" in out or out == "", out


def guest_flush(instance) -> None:
    out = hmp(instance, f'qemu-io -d {disk_device(instance)} "flush"')
    assert "rror" not in out, out


def outside(lab, volume) -> Path:
    """A volume's file as this process sees it (the hosts' pools live in namespaces)."""
    if volume.pool == "shared":
        return Path(lab.shared_dir) / volume.name
    index = 0 if volume.host.name == "lab0" else 1
    return Path(lab.hosts[index].pool_dir) / volume.name


def qemu_img_info(path: Path, *, chain: bool = True) -> list[dict]:
    """The image and (chain) every backing file below it, as qemu-img reads them."""
    args = ["--backing-chain"] if chain else []
    proc = subprocess.run(
        ["qemu-img", "info", "-U", *args, "--output=json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    return data if chain else [data]


def file_holds_pattern(
    path: Path, offset: int = 0, length: str = "64k", pattern: str = PATTERN
) -> bool:
    proc = subprocess.run(
        [
            "qemu-io",
            "-f",
            "qcow2",
            "-r",
            "-U",
            "-c",
            f"read -P {pattern} {offset} {length}",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0 and "Pattern verification failed" not in proc.stdout
