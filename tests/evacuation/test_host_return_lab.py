"""Rebuild from a backup, then the old host returns (session lab; the "loss" is the host's
row going offline while its libvirtd keeps running): its stale domain is not started again,
reconcile lists it as a leftover of the instance, which stays where it was rebuilt, and the
host page removes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from hosts.models import Host
from hosts.services import host_check_health
from hosts.tasks import mark_lost_hosts
from instances import operations
from instances.models import Backup, Instance
from instances.operations.backup import BACKUP
from instances.operations.cold_migrate import COLD_MIGRATE
from instances.operations.rebuild import REBUILD
from tests.instances.conftest import dom_state, domain_names, pool_volumes, run, run_ok

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def test_rebuild_from_backup_then_the_old_host_returns(
    lab_hosts, admin_user, qcow2_image, tiny_flavor, settings, django_capture_on_commit_callbacks
):
    lab0, lab1 = lab_hosts
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="rb", image=qcow2_image, flavor=tiny_flavor, host=lab1
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    try:
        run_ok(BACKUP.start(user=admin_user, target=instance, name="before-move"))
        backup = Backup.objects.get(instance=instance, state="ready")
        instance.refresh_from_db()
        run_ok(operations.POWER["stop"].start(user=admin_user, target=instance))
        instance.refresh_from_db()
        run_ok(COLD_MIGRATE.start(user=admin_user, target=instance, host=lab0))
        instance.refresh_from_db()
        assert instance.host_id == lab0.pk
        old_disk = instance.volumes.get(role="root").name

        # lab0 stops answering (as far as the panel knows) for longer than the grace.
        Host.objects.filter(pk=lab0.pk).update(
            status=Host.Status.OFFLINE, last_seen_at=timezone.now() - timedelta(minutes=5)
        )
        settings.HOST_DOWN_GRACE_SECONDS = 60
        assert mark_lost_hosts() == {"lab0": 1}
        instance.refresh_from_db()
        assert instance.state == "host-down"

        job = run_ok(REBUILD.start(user=admin_user, target=instance, source="backup"))
        assert job.result["source"] == "backup" and job.result["source_id"] == backup.pk
        assert job.result["copy_of"] == backup.completed_at.isoformat()
        assert job.result["window_seconds"] >= (job.started_at - backup.completed_at).seconds
        assert job.result["to_host"] == lab1.pk and job.result["from_host"] == lab0.pk
        instance.refresh_from_db()
        assert instance.host_id == lab1.pk and instance.state == "running"
        assert dom_state(lab1, instance.domain_name) == "running"
        assert dom_state(lab0, instance.domain_name) == "shut off"  # the stale copy

        # lab0 comes back: its health check finds it online, reconcile runs at once.
        lab0.refresh_from_db()
        with django_capture_on_commit_callbacks(execute=True):
            host_check_health(host=lab0)
        lab0.refresh_from_db()
        assert lab0.status == Host.Status.ONLINE
        [leftover] = [d for d in lab0.unmanaged_domains if d.get("leftover_of")]
        assert leftover["name"] == instance.domain_name
        assert leftover["leftover_of"] == instance.pk and leftover["instance_host"] == "lab1"
        assert dom_state(lab0, instance.domain_name) == "shut off"  # not started again
        instance.refresh_from_db()
        assert instance.host_id == lab1.pk and instance.state == "running"

        client = Client()
        client.force_login(admin_user)
        page = client.get(f"/hosts/{lab0.pk}/").content.decode()
        assert f'data-leftover="{instance.domain_name}"' in page
        client.post(
            "/instances/leftovers/remove/", {"host": lab0.pk, "domain": instance.domain_name}
        )
        assert instance.domain_name not in domain_names(lab0)
        assert old_disk not in pool_volumes(lab0)
        assert dom_state(lab1, instance.domain_name) == "running"
        lab0.refresh_from_db()
        assert not [d for d in lab0.unmanaged_domains if d.get("leftover_of")]
    finally:
        instance = Instance.objects.filter(pk=instance.pk).first()
        if instance is not None and instance.current_job_id is None:
            run(operations.DELETE.start(user=admin_user, target=instance))
