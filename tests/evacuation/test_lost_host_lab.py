"""A lost host, on a lab of this module's own: an instance's disk is mirrored to the shared
pool (H4's block copy), its host's libvirtd and QEMU are stopped for good, mark_lost_hosts
makes it host-down, and REBUILD brings it up on the other host from the mirror, with the
pattern written into the disk before."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from hosts.models import Host
from hosts.services import host_check_health, host_create
from hosts.tasks import mark_lost_hosts
from instances import operations
from instances.models import Backup, DiskMirror, Instance
from instances.operations.backup import BACKUP
from instances.operations.mirror import MIRROR_START
from instances.operations.rebuild import REBUILD
from tests.backups.conftest import pattern_present, qemu_io
from tests.instances.conftest import dom_state, domain_names, run_ok

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def power(user, instance, action):
    instance.refresh_from_db()
    run_ok(operations.POWER[action].start(user=user, target=instance))
    instance.refresh_from_db()


def test_instance_rebuilt_from_its_mirror_after_host_loss(
    loss_lab, admin_user, qcow2_image, tiny_flavor, settings
):
    lost = host_create(name="loss0", uri=loss_lab.hosts[0].uri_tcp)
    spare = host_create(name="loss1", uri=loss_lab.hosts[1].uri_tcp)
    assert lost.status == spare.status == Host.Status.ONLINE
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="dr", image=qcow2_image, flavor=tiny_flavor, host=lost
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    root = instance.volumes.get(role="root")

    # The pattern goes into the shut-off disk, through the pool directory seen from outside.
    power(admin_user, instance, "stop")
    wrote = qemu_io(loss_lab.hosts[0].pool_dir / root.name, "write -P 0xab 0 1M")
    assert wrote.returncode == 0, wrote.stderr
    power(admin_user, instance, "start")
    assert instance.state == "running"

    # A backup in the host's own (private) pool: lost with the host.
    run_ok(BACKUP.start(user=admin_user, target=instance, name="nightly"))
    backup = Backup.objects.get(instance=instance)
    run_ok(MIRROR_START.start(user=admin_user, target=instance, disk="vda", pool="shared"))
    mirror = DiskMirror.objects.get(instance=instance)
    assert mirror.state == DiskMirror.State.MIRRORED
    mirror_file = Path(loss_lab.shared_dir) / mirror.volume.name
    assert mirror_file.exists()

    # The host is lost for good: its libvirtd and QEMU stop, its directories go.
    loss_lab.hosts[0].stop()
    host_check_health(host=lost)
    lost.refresh_from_db()
    assert lost.status == Host.Status.OFFLINE
    settings.HOST_DOWN_GRACE_SECONDS = 0
    assert mark_lost_hosts() == {"loss0": 1}
    instance.refresh_from_db()
    assert instance.state == Instance.State.HOST_DOWN
    assert "loss0" in instance.state_reason

    api = APIClient()
    api.force_authenticate(admin_user)
    recovery = api.get(f"/api/v1/instances/{instance.pk}/recovery/").json()
    source, unreachable = recovery["sources"]  # newest copy first
    assert source["source"] == "mirror" and source["id"] == mirror.pk
    assert source["target_host"] == spare.pk, source
    assert source["window_seconds"] >= 0
    # Mirrored until the host was lost: in sync at least until it reached mirrored.
    mirror.refresh_from_db()
    assert source["copy_of"] == max(lost.last_seen_at, mirror.synced_at).isoformat()
    assert unreachable["source"] == "backup" and unreachable["id"] == backup.pk
    assert unreachable["copy_of"] == backup.completed_at.isoformat()
    assert unreachable["target_host"] is None
    assert "loss0 is offline" in unreachable["problem"], unreachable
    refused = api.post(
        f"/api/v1/instances/{instance.pk}/rebuild/", {"source": "backup"}, format="json"
    )
    assert refused.status_code == 409 and "offline" in refused.json()["detail"]
    page = APIClient()
    page.force_login(admin_user)
    card = page.get(f"/instances/{instance.pk}/").content.decode()
    assert f'data-source="mirror-{mirror.pk}"' in card and "Data loss window" in card

    answer = api.post(f"/api/v1/instances/{instance.pk}/rebuild/", {}, format="json")
    assert answer.status_code == 202, answer.content
    job = run_ok(_job(answer.json()["id"]))
    assert job.kind == REBUILD.kind
    instance.refresh_from_db()
    assert instance.host_id == spare.pk
    assert instance.state == "running" and instance.current_job is None
    assert dom_state(spare, instance.domain_name) == "running"
    assert job.result["source"] == "mirror" and job.result["source_id"] == mirror.pk
    assert job.result["from_host"] == lost.pk and job.result["to_host"] == spare.pk
    assert job.result["window_seconds"] >= source["window_seconds"]
    new_root = instance.volumes.get(role="root")
    assert new_root.host_id == spare.pk and new_root.pool == spare.default_pool
    assert not instance.volumes.filter(host=lost, role__in=["root", "cdrom"]).exists()
    assert mirror_file.exists()  # the mirror stays a copy of its own
    mirror.refresh_from_db()
    assert mirror.state == DiskMirror.State.STOPPED

    # The rebuilt disk holds the pattern (read while the domain is shut off).
    power(admin_user, instance, "stop")
    rebuilt = loss_lab.hosts[1].pool_dir / new_root.name
    assert pattern_present(rebuilt), qemu_io(rebuilt, "read -P 0xab 0 1M", read_only=True)
    assert not pattern_present(rebuilt, 0xCD)  # the check reads what is there
    run_ok(operations.DELETE.start(user=admin_user, target=instance))
    assert instance.domain_name not in domain_names(spare)


def _job(job_id):
    from cloudpanel.jobs.models import Job

    return Job.objects.get(pk=job_id)
