"""Fixtures for instance tests: tiny flavors, tiny images, and a job runner."""

from __future__ import annotations

import subprocess

import pytest

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import job_execute
from lab import virsh

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _in_memory_channels(settings):
    # Job progress broadcasts need no Redis in these tests.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # Users are made per test; the real hasher costs most of a fast test's time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]



@pytest.fixture
def tiny_flavor(db):
    from instances.services import flavor_create

    return flavor_create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)


@pytest.fixture
def small_flavor(db):
    from instances.services import flavor_create

    return flavor_create(name="small", vcpus=2, ram_mib=96, disk_gib=2)


def make_image(project, settings, *, name="tiny-img", fmt="qcow2", size_mib=64, **fields):
    from images.models import Image

    path = settings.IMAGE_STORE / f"{name}.{fmt}"
    if fmt == "iso":
        path.write_bytes(b"\0" * 1024 * 1024)
    else:
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", fmt, str(path), f"{size_mib}M"], check=True
        )
    return Image.objects.create(
        name=name,
        disk_format=fmt,
        status=Image.Status.ACTIVE,
        project=project,
        file=path.name,
        file_size=path.stat().st_size,
        virtual_size=size_mib * MIB if fmt != "iso" else None,
        **fields,
    )


@pytest.fixture
def qcow2_image(default_project, settings):
    return make_image(default_project, settings)


def run(job: Job) -> Job:
    """Run a job to its end in this process, as a worker would."""
    job_execute(job.id)
    job.refresh_from_db()
    return job


def run_ok(job: Job) -> Job:
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.log)
    return job


def uri_of(host) -> str:
    from hosts.connection import connection_uri

    return connection_uri(host)


def dom_state(host, name: str) -> str | None:
    """The domain's state as virsh reports it (None when it does not exist)."""
    proc = virsh(uri_of(host), "domstate", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def pool_volumes(host, pool: str = "default") -> set[str]:
    virsh(uri_of(host), "pool-refresh", pool, check=False)
    return set(virsh(uri_of(host), "vol-list", pool).stdout.split()[::2])


def domain_names(host) -> set[str]:
    return set(virsh(uri_of(host), "list", "--all", "--name").stdout.split())
