"""The periodic health check: the task Celery beat runs, run for real against real libvirt.

A lab host whose libvirtd is stopped goes offline (with a HostEvent) when the task runs, and
comes back online when it runs after libvirtd is back; a test:///default host beside it
stays online throughout. The beat schedule names the task and routes it to the upkeep queue.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from cloudpanel.celery import app
from hosts.models import Host, HostEvent
from hosts.tasks import check_all_hosts

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]


def _wait_for_status(host: Host, status: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        host.refresh_from_db()
        if host.status == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"host {host.name} is {host.status}, not {status}: {host.last_error}")


def _events(host: Host) -> list[tuple[str, str]]:
    return list(
        HostEvent.objects.filter(host=host).order_by("id").values_list("from_status", "to_status")
    )


def test_the_health_task_takes_a_host_offline_and_back_online(lab, lab_hosts, test_host):
    host = lab_hosts[1]
    assert host.status == "online" and test_host.status == "online"
    before, demo_before = _events(host), _events(test_host)

    lab.hosts[1].stop_libvirtd()
    try:
        # Through Celery (the task as beat's message would run it), in this process.
        assert check_all_hosts.apply().get() == Host.objects.filter(enabled=True).count()
        _wait_for_status(host, "offline")
        assert "libvirt" in host.last_error.lower()
        assert _events(host)[len(before) :] == [("online", "offline")]
    finally:
        lab.hosts[1].start_libvirtd()

    check_all_hosts.apply().get()
    _wait_for_status(host, "online")
    assert host.last_error == ""
    assert _events(host)[len(before) :] == [("online", "offline"), ("offline", "online")]
    test_host.refresh_from_db()
    assert test_host.status == "online" and _events(test_host) == demo_before  # unaffected


def test_beat_schedules_the_health_task_on_the_upkeep_queue():
    entries = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == check_all_hosts.name
    ]
    assert len(entries) == 1
    assert 0 < float(entries[0]["schedule"]) <= 60
    # The name resolves to this very task in the app beat sends to.
    assert app.tasks[entries[0]["task"]].run is check_all_hosts.run
    assert settings.CELERY_TASK_ROUTES[check_all_hosts.name]["queue"] == "periodic"
