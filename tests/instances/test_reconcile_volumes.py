"""Reconcile works from the volume rows: a volume made but never marked ready is adopted,
a planned one never made is dropped, a ready one gone from the host is reported, and the
rows of an instance a job is working on are left to that job."""

import pytest

from cloudpanel.jobs.models import Job
from cloudpanel.virt import storage
from hosts.connection import connection_uri
from instances.models import Flavor, Instance, Volume
from instances.reconcile import ReconcileReport, reconcile_volumes

pytestmark = pytest.mark.django_db

POOL = "default-pool"  # the test driver's pool


def _row(instance, name, state):
    return Volume.objects.create(
        host=instance.host, instance=instance, pool=POOL, name=name, state=state
    )


def test_rows_and_pools_are_matched(test_host, default_project):
    flavor = Flavor.objects.create(name="f", vcpus=1, ram_mib=64, disk_gib=1)
    idle = Instance.objects.create(name="idle", project=default_project, flavor=flavor,
                                   host=test_host, state="shutoff")  # fmt: skip
    busy = Instance.objects.create(name="busy", project=default_project, flavor=flavor,
                                   host=test_host, state="building")  # fmt: skip
    busy.current_job = Job.objects.create(kind="instance.create", target_type="instance",
                                          target_id=busy.pk, status="running")  # fmt: skip
    busy.save()
    uri = connection_uri(test_host)
    made = storage.create_volume(uri, POOL, "rc-made.qcow2", 1024 * 1024, fmt="qcow2")
    try:
        made_row = _row(idle, "rc-made.qcow2", "creating")  # the worker died before marking
        never_row = _row(idle, "rc-never.qcow2", "creating")  # died before creating
        gone_row = _row(idle, "rc-gone.qcow2", "ready")  # removed behind the panel's back
        busy_row = _row(busy, "rc-busy.qcow2", "creating")  # its job is on it

        report = ReconcileReport()
        reconcile_volumes(test_host, report)

        assert report.volumes_ready == [made_row.pk]
        assert report.volumes_dropped == [never_row.pk]
        assert report.volumes_missing == [gone_row.pk]
        made_row.refresh_from_db()
        assert made_row.state == "ready" and made_row.path == made.path
        assert not Volume.objects.filter(pk=never_row.pk).exists()
        assert Volume.objects.filter(pk=gone_row.pk, state="ready").exists()
        assert Volume.objects.get(pk=busy_row.pk).state == "creating"
    finally:
        storage.delete_volume(uri, POOL, "rc-made.qcow2")
