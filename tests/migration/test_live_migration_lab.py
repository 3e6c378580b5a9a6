"""Live migration on the real lab (lab0 may use KVM, lab1 is TCG only; TCG guests move
both ways). Tiny OS-less guests: SeaBIOS runs, which is enough to see a guest keep running.
"""

from __future__ import annotations

import pytest

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import job_create
from instances import operations
from instances.models import Instance, Volume
from instances.operations.migrate import LIVE_MIGRATE
from instances.watcher.apply import UNMANAGED, apply_event
from tests.instances.conftest import dom_state, domain_names, pool_volumes, run, run_ok

from .conftest import cpu_time_ns, filled_image, provision, uri_of, vnc_banner, wait_until

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def assert_only_on(instance, host, other, pool="default"):
    """The database, `host` and `other` agree: it runs on `host`, `other` has nothing."""
    instance.refresh_from_db()
    assert instance.host_id == host.pk
    assert instance.current_job_id is None
    assert instance.state == Instance.State.RUNNING
    assert dom_state(host, instance.domain_name) == "running"
    assert instance.domain_name not in domain_names(other)
    volumes = list(instance.volumes.all())
    assert volumes and all(v.host_id == host.pk and v.pool == pool for v in volumes)
    assert all(v.state == Volume.State.READY for v in volumes)
    names = {v.name for v in volumes}
    assert names <= pool_volumes(host, pool)
    if pool == "default":  # private per host: the source's copy must be gone
        assert not names & pool_volumes(other, pool)


def test_live_migration_without_shared_storage(
    lab_hosts, admin_user, qcow2_image, tiny_flavor, recorder
):
    lab0, lab1 = lab_hosts
    instance = provision(admin_user, qcow2_image, tiny_flavor, lab1)  # TCG: may go to lab0
    name = instance.domain_name
    src_events, dst_events = recorder(lab1), recorder(lab0)
    job = run_ok(LIVE_MIGRATE.start(user=admin_user, target=instance, host=lab0))

    assert job.result["shared_storage"] is False
    assert job.result["downtime_ms"] is not None and job.result["downtime_ms"] >= 0
    assert job.result["bytes"] > 0
    assert job.result["disk_bytes"] > 0
    assert "Migrating" in job.log
    assert_only_on(instance, lab0, lab1)
    assert vnc_banner(lab0, name).startswith(b"RFB 003.00")
    # Never stopped on the source but to leave it; the target resumed it, never booted it.
    src_events.wait_for(name, "stopped", timeout=10)
    stops = [e.detail for e in src_events.of(name) if e.event == "stopped"]
    assert stops == ["migrated"], src_events.of(name)
    starts = [e.detail for e in dst_events.of(name) if e.event == "started"]
    assert starts == ["migrated"], dst_events.of(name)
    # CPU time is QEMU's, per process: it keeps growing on the target (running, not paused).
    cpu_after = cpu_time_ns(lab0, name)
    wait_until(lambda: cpu_time_ns(lab0, name) > cpu_after)

    # The watcher: during a migration job the source's and target's events leave the row
    # alone; once the row names the target, the source's events are about nobody.
    instance.refresh_from_db()
    migrating = job_create(
        kind=LIVE_MIGRATE.kind, target_type=Job.TargetType.INSTANCE, target_id=instance.pk,
        target_name=instance.name, project=instance.project, user=admin_user,
        params={"host": lab0.pk}, exclusive=False, enqueue=False,
    )  # fmt: skip
    Job.objects.filter(pk=migrating.pk).update(status=Job.Status.RUNNING)
    Instance.objects.filter(pk=instance.pk).update(host=lab1, current_job=migrating)
    for event in src_events.of(name):
        apply_event(lab1, uri_of(lab1), event)
    instance.refresh_from_db()
    assert instance.state == Instance.State.RUNNING
    Instance.objects.filter(pk=instance.pk).update(host=lab0, current_job=None)
    for event in src_events.of(name):
        assert apply_event(lab1, uri_of(lab1), event) == UNMANAGED
    for event in dst_events.of(name):
        apply_event(lab0, uri_of(lab0), event)
    instance.refresh_from_db()
    assert instance.state == Instance.State.RUNNING
    lab1.refresh_from_db()
    assert all(d["name"] != name for d in lab1.unmanaged_domains)

    # And back to the TCG host.
    run_ok(LIVE_MIGRATE.start(user=admin_user, target=instance, host=lab1))
    assert_only_on(instance, lab1, lab0)
    assert vnc_banner(lab1, name).startswith(b"RFB 003.00")


def test_live_migration_with_shared_storage_keeps_the_disk(
    lab, lab_hosts, admin_user, qcow2_image, tiny_flavor
):
    lab0, lab1 = lab_hosts
    lab1.default_pool = "shared"
    lab1.save(update_fields=["default_pool"])
    instance = provision(admin_user, qcow2_image, tiny_flavor, lab1, name="onshared")
    root = instance.volumes.get(role=Volume.Role.ROOT)
    assert root.pool == "shared"
    disk = lab.shared_dir / root.name
    inode = disk.stat().st_ino

    job = run_ok(
        LIVE_MIGRATE.start(user=admin_user, target=instance, host=lab0, auto_converge=True)
    )

    assert job.result["shared_storage"] is True
    assert job.result["disk_bytes"] == 0
    assert_only_on(instance, lab0, lab1, pool="shared")
    assert disk.stat().st_ino == inode  # the very same file, not a copy
    root.refresh_from_db()
    assert (root.host_id, root.pool, root.path) == (
        lab0.pk,
        "shared",
        f"/var/lib/libvirt/shared/{root.name}",
    )


def test_cancel_mid_way_leaves_it_running_on_the_source(
    lab_hosts, admin_user, default_project, settings, tiny_flavor, on_job_progress
):
    lab0, lab1 = lab_hosts
    image = filled_image(default_project, settings)
    instance = provision(admin_user, image, tiny_flavor, lab1, name="cancelme")
    name = instance.domain_name
    cpu_before = cpu_time_ns(lab1, name)
    job = LIVE_MIGRATE.start(user=admin_user, target=instance, host=lab0, bandwidth_mib=1)
    seen = []

    def cancel_once_copying(changed):
        stats = (changed.result or {}).get("migration") or {}
        if changed.pk == job.pk and stats.get("data_processed") and not seen:
            seen.append(stats)
            Job.objects.filter(pk=job.pk).update(cancel_requested=True)

    on_job_progress(cancel_once_copying)
    job = run(job)

    assert job.status == Job.Status.CANCELLED, (job.error, job.log)
    assert seen and seen[0]["data_remaining"] > 0  # it was cancelled mid-way
    instance.refresh_from_db()
    assert instance.host_id == lab1.pk and instance.state == Instance.State.RUNNING
    assert instance.current_job_id is None and instance.state_reason == ""
    assert dom_state(lab1, name) == "running"
    assert cpu_time_ns(lab1, name) > cpu_before
    assert name not in domain_names(lab0)
    root = instance.volumes.get()
    assert (root.host_id, root.pool) == (lab1.pk, "default")
    assert root.name in pool_volumes(lab1)
    assert root.name not in pool_volumes(lab0)  # the half copy is gone
    assert not Volume.objects.filter(host=lab0, name=root.name).exists()


def test_a_cloud_init_seed_moves_with_the_instance(
    lab_hosts, admin_user, default_project, settings, tiny_flavor
):
    """The seed is a read-only cdrom libvirt does not copy: the panel copies it first."""
    from tests.instances.conftest import make_image
    from tests.instances.test_create_identity import cloud_init_image_fields

    lab0, lab1 = lab_hosts
    image = make_image(default_project, settings, name="seeded", **cloud_init_image_fields())
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="seeded", image=image, flavor=tiny_flavor, host=lab1,
            hostname="seeded",
        )
    )  # fmt: skip
    instance = Instance.objects.get(pk=job.target_id)
    roles = sorted(instance.volumes.values_list("role", flat=True))
    assert roles == ["cdrom", "root"]

    job = run_ok(LIVE_MIGRATE.start(user=admin_user, target=instance, host=lab0))

    assert job.result["shared_storage"] is False
    assert_only_on(instance, lab0, lab1)
    assert sorted(instance.volumes.values_list("role", flat=True)) == ["cdrom", "root"]
