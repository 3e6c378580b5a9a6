"""Image files made by qemu-img, projects with members, and small helpers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from cloudpanel.projects.models import Membership, Project


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def store_files() -> list[Path]:
    """Every file in the image store, temporary ones included."""
    return sorted(p for p in Path(settings.IMAGE_STORE).rglob("*") if p.is_file())


@pytest.fixture
def qcow2_file(tmp_path) -> Path:
    path = tmp_path / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", str(path), "64M")
    subprocess.run(
        ["qemu-io", "-c", "write -P 0x5a 0 1M", str(path)], check=True, capture_output=True
    )
    return path


@pytest.fixture
def raw_file(tmp_path) -> Path:
    path = tmp_path / "disk.raw"
    qemu_img("create", "-f", "raw", str(path), "4M")
    with open(path, "r+b") as fh:
        fh.seek(1024 * 1024)
        fh.write(b"some data in the middle of a raw disk" * 100)
    return path


@pytest.fixture
def iso_file(tmp_path) -> Path:
    """Enough of an ISO 9660 image for detection: a primary volume descriptor at 32 KiB."""
    path = tmp_path / "installer.iso"
    with open(path, "wb") as fh:
        fh.truncate(1024 * 1024)
        fh.seek(0x8000)
        fh.write(b"\x01CD001\x01\x00" + b"CLOUDPANEL TEST".ljust(32))
    return path


@pytest.fixture
def backing_qcow2(tmp_path) -> Path:
    path = tmp_path / "x.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(path), "1M")
    return path


@pytest.fixture
def project_a(db) -> Project:
    return Project.objects.create(name="team-a")


@pytest.fixture
def project_b(db) -> Project:
    return Project.objects.create(name="team-b")


@pytest.fixture
def member_client(member_user, project_a):
    from rest_framework.test import APIClient

    Membership.objects.create(project=project_a, user=member_user, role="member")
    client = APIClient()
    client.force_authenticate(member_user)
    return client


@pytest.fixture
def outsider(django_user_model, project_b):
    user = django_user_model.objects.create_user("bob", password="pw-bob-123")
    Membership.objects.create(project=project_b, user=user, role="member")
    return user


@pytest.fixture
def outsider_client(outsider):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(outsider)
    return client


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The shared user fixtures set passwords; PBKDF2 would cost about a second per test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _in_memory_channels(settings):
    # Job progress broadcasts need no Redis in these tests.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def run_job(job_id: int):
    """Run a job to its end in this process, as a worker would, and return it."""
    from cloudpanel.jobs.models import Job
    from cloudpanel.jobs.services import job_execute

    job_execute(job_id)
    return Job.objects.get(pk=job_id)
