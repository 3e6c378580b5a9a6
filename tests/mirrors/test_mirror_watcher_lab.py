"""The host watcher process (`manage.py watch_hosts`) fails a mirror whose domain is
destroyed behind the panel's back: the block copy dies with the domain without a block-job
event, so it is the lifecycle event (and mirror_events' instance_changed receiver, in the
watcher's process) that notices."""

from __future__ import annotations

import time

import pytest

from cloudpanel.jobs import services as job_services
from instances.models import DiskMirror
from lab import virsh

from .conftest import outside, uri_of
from .test_mirror_lab import mirror_of

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _jobs_run_here(monkeypatch):
    # Jobs run in this process (run_ok); no worker should find them queued in Redis.
    monkeypatch.setattr(job_services, "job_enqueue", lambda job: None)


@pytest.fixture(autouse=True)
def _no_stale_leases(settings):
    from cloudpanel.live.metrics import client

    keys = list(client().scan_iter("cloudpanel:watcher:*"))
    if keys:
        client().delete(*keys)


def test_watcher_fails_the_mirror_of_a_destroyed_domain(
    lab, running_instance, admin_user, start_watcher
):
    instance = running_instance()
    mirror = mirror_of(instance, admin_user)
    volume_file = outside(lab, mirror.volume)
    watcher = start_watcher(WATCHER_LEASE_SECONDS="3", WATCHER_STATS_INTERVAL="5")
    watcher.wait_line(rf"watching host {instance.host.name} \(id {instance.host.pk}\)", 60)

    virsh(uri_of(instance.host), "destroy", instance.domain_name)
    deadline = time.monotonic() + 30  # a bound only
    while time.monotonic() < deadline:
        mirror.refresh_from_db()
        if mirror.state != DiskMirror.State.MIRRORED:
            break
        watcher.check()
        time.sleep(0.1)
    assert mirror.state == DiskMirror.State.FAILED, mirror.error
    assert "shut off" in mirror.error
    assert mirror.volume is None and not volume_file.exists()
