"""Fixtures for live migration tests: those of the instance tests (in-process job runner,
tiny images and flavors), instances made through the panel, and libvirt event recorders."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from cloudpanel.jobs.signals import job_changed
from cloudpanel.virt import console
from cloudpanel.virt.events import DomainEvent, HostSubscription
from instances import operations
from instances.models import Instance
from lab import virsh
from tests.instances.conftest import (  # noqa: F401 - fixtures
    _in_memory_channels,
    make_image,
    qcow2_image,
    run_ok,
    tiny_flavor,
    uri_of,
)

MIB = 1024 * 1024


@pytest.fixture
def flavor128(db):
    from instances.services import flavor_create

    return flavor_create(name="m128", vcpus=1, ram_mib=128, disk_gib=1)


def filled_image(project, settings, *, name="filled-img", data_mib=24):
    """A qcow2 image whose first `data_mib` MiB are random (incompressible, not zero):
    copying an instance's disk made from it takes a while under a bandwidth limit."""
    image = make_image(project, settings, name=name, size_mib=64)
    path = settings.IMAGE_STORE / image.file
    raw = settings.IMAGE_STORE / f"{name}.raw"
    with open(raw, "wb") as fh:
        fh.write(os.urandom(data_mib * MIB))
        fh.truncate(64 * MIB)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(path)], check=True)
    raw.unlink()
    image.file_size = path.stat().st_size
    image.save(update_fields=["file_size"])
    return image


def provision(user, image, flavor, host, name="mig1") -> Instance:
    job = run_ok(
        operations.CREATE.start(user=user, name=name, image=image, flavor=flavor, host=host)
    )
    return Instance.objects.get(pk=job.target_id)


def cpu_time_ns(host, name: str) -> int:
    out = virsh(uri_of(host), "domstats", name, "--cpu-total").stdout
    for line in out.splitlines():
        if line.strip().startswith("cpu.time="):
            return int(line.split("=", 1)[1])
    raise AssertionError(out)


def vnc_banner(host, name: str) -> bytes:
    endpoint = console.vnc_endpoint(uri_of(host), name)
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
        data = b""
        while len(data) < 12:
            chunk = sock.recv(12 - len(data))
            if not chunk:
                break
            data += chunk
    return data


def wait_until(predicate, timeout: float = 30.0, what: str = "") -> None:
    """A bound, never what is asserted: the condition must come true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what or predicate
        time.sleep(0.2)


class Recorder:
    """Every domain event of one host (a real libvirt subscription of its own)."""

    def __init__(self, uri: str) -> None:
        self.events: list[DomainEvent] = []
        self.subscription = HostSubscription(uri, self._deliver).open()

    def _deliver(self, item) -> None:
        if isinstance(item, DomainEvent):
            self.events.append(item)

    def of(self, name: str) -> list[DomainEvent]:
        return [e for e in self.events if e.name == name]

    def wait_for(self, name: str, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.event == event for e in self.of(name)):
            assert time.monotonic() < deadline, self.events
            time.sleep(0.1)


@pytest.fixture
def recorder():
    made = []

    def start(host) -> Recorder:
        made.append(Recorder(uri_of(host)))
        return made[-1]

    yield start
    for rec in made:
        rec.subscription.close()


@pytest.fixture
def on_job_progress():
    """Run `fn(job)` on every saved change of a job (in the job's own thread, in process)."""
    receivers = []

    def connect(fn):
        def receiver(sender, job, **kwargs):
            fn(job)

        receivers.append(receiver)
        job_changed.connect(receiver, weak=False)

    yield connect
    for receiver in receivers:
        job_changed.disconnect(receiver)


@pytest.fixture(autouse=True)
def _delete_instances_after(request, db):
    """The lab is shared by the whole session: stop and remove what a test made."""
    yield
    if "lab_hosts" not in request.fixturenames and "own_lab_hosts" not in request.fixturenames:
        return
    from django.contrib.auth.models import User

    from instances.operations.delete import DELETE
    from tests.instances.conftest import run

    user = User.objects.filter(is_staff=True).first() or User.objects.create(
        username="cleanup-admin", is_staff=True, is_superuser=True
    )
    from cloudpanel.jobs.models import Job

    Job.objects.filter(status__in=(Job.Status.PENDING, Job.Status.RUNNING)).update(
        status=Job.Status.CANCELLED
    )
    for instance in Instance.objects.select_related("host"):
        Instance.objects.filter(pk=instance.pk).update(current_job=None)
        instance.refresh_from_db()
        run(DELETE.start(user=user, target=instance))
