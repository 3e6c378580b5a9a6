"""A target host killed mid-migration (its libvirtd and QEMU): the instance keeps running on
the source, the database says so, and the job failed with a readable error. On a lab of its
own (two TCG hosts), so the session's lab stays whole."""

from __future__ import annotations

import os
import signal

import pytest

from cloudpanel.jobs.models import Job
from instances.models import Instance, Volume
from instances.operations.migrate import LIVE_MIGRATE
from tests.conftest import disposable_lab
from tests.instances.conftest import dom_state, domain_names, pool_volumes, run, run_ok

from .conftest import cpu_time_ns, filled_image, provision, wait_until

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


@pytest.fixture(scope="module")
def own_lab(lab):
    with disposable_lab("kill") as the_lab:
        yield the_lab


@pytest.fixture
def own_lab_hosts(db, own_lab):
    from hosts.services import host_create

    return [host_create(name=f"kill{i}", uri=h.uri_tcp) for i, h in enumerate(own_lab.hosts)]


def kill_host(lab_host) -> None:
    """libvirtd and every QEMU of the host, at once (SIGKILL): as if it lost power."""
    pids = lab_host.pids()
    for pid in pids["libvirtd"] + pids["other"]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_target_killed_mid_migration(
    own_lab, own_lab_hosts, admin_user, default_project, settings, tiny_flavor, on_job_progress
):
    src, dst = own_lab_hosts
    image = filled_image(default_project, settings, name="kill-img")
    instance = provision(admin_user, image, tiny_flavor, src, name="survivor")
    name = instance.domain_name
    job = LIVE_MIGRATE.start(user=admin_user, target=instance, host=dst, bandwidth_mib=1)
    killed = []

    def kill_once_copying(changed):
        stats = (changed.result or {}).get("migration") or {}
        if changed.pk == job.pk and stats.get("data_processed") and not killed:
            killed.append(stats)
            kill_host(own_lab.hosts[1])

    on_job_progress(kill_once_copying)
    job = run(job)

    assert killed and killed[0]["data_remaining"] > 0
    assert job.status == Job.Status.FAILED, job.log
    assert job.error.startswith("Live migration to host kill1 failed: "), job.error
    assert "host kill1 stopped answering" in job.error, job.error
    assert job.public_error == "The live migration failed; the instance still runs where it was."
    instance.refresh_from_db()
    assert instance.host_id == src.pk and instance.current_job_id is None
    assert instance.state == Instance.State.RUNNING
    assert dom_state(src, name) == "running"
    cpu = cpu_time_ns(src, name)
    wait_until(lambda: cpu_time_ns(src, name) > cpu)
    root = instance.volumes.get()
    assert (root.host_id, root.pool) == (src.pk, "default")
    # The target could not be cleaned while dead: its half copy is no instance's any more.
    assert not Volume.objects.filter(host=dst, instance__isnull=False).exists()

    # The target returns: a new migration clears the leftover first and succeeds.
    own_lab.hosts[1].restart_libvirtd()
    wait_until(lambda: name not in domain_names(dst), what="stale incoming domain on the target")
    instance.refresh_from_db()
    run_ok(LIVE_MIGRATE.start(user=admin_user, target=instance, host=dst))
    instance.refresh_from_db()
    assert instance.host_id == dst.pk
    assert dom_state(dst, name) == "running"
    assert name not in domain_names(src)
    assert root.name not in pool_volumes(src)
    assert list(Volume.objects.filter(name=root.name).values_list("host_id", "instance_id")) == [
        (dst.pk, instance.pk)
    ]
