"""The watcher on libvirt's test:///default driver, in a thread of the test process.

In-thread because test:///default's domains live in the process that opened the driver:
a watcher process could never see what this test does to them (the lab tests run the
real `manage.py watch_hosts` process). Everything else is real: libvirt's event loop and
events, the database, Redis leases, samples and channel layer.
"""

from __future__ import annotations

import threading
import time

import libvirt
import pytest

from cloudpanel.live import metrics
from cloudpanel.live.publisher import ADMIN_GROUP, project_group
from cloudpanel.projects.models import Project
from instances.models import Instance
from instances.services import instance_adopt
from instances.watcher import Watcher

from .conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

URI = "test:///default"


@pytest.fixture
def conn():
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture
def run_watcher():
    watchers: list[tuple[Watcher, threading.Thread]] = []

    def start(**kwargs) -> Watcher:
        watcher = Watcher(lease_seconds=kwargs.pop("lease_seconds", 2.0), **kwargs)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        watchers.append((watcher, thread))
        return watcher

    yield start
    for watcher, thread in watchers:
        watcher.stop()
        thread.join(10)


def _define(conn, name: str) -> libvirt.virDomain:
    return conn.defineXML(
        f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    )


@pytest.fixture
def domains(conn):
    made: list[str] = []

    def make(name: str, start: bool = True) -> libvirt.virDomain:
        dom = _define(conn, name)
        made.append(name)
        if start:
            dom.create()
        return dom

    yield make
    for name in made:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def _watching(watcher: Watcher, host_id: int) -> bool:
    watch = watcher.watches.get(host_id)
    return watch is not None and watch.subscription is not None


def test_lifecycle_event_updates_row_and_publishes(
    test_host, admin_user, conn, domains, run_watcher, listen
):
    domains("wx-life")
    instance = instance_adopt(user=admin_user, host=test_host, domain_name="wx-life")
    assert instance.state == "running"
    admins = listen(ADMIN_GROUP)
    watcher = run_watcher()
    wait_until(lambda: _watching(watcher, test_host.pk), timeout=10)

    dom = conn.lookupByName("wx-life")
    before = time.time()
    dom.destroy()  # behind the panel's back
    at, message = admins.wait_for(
        lambda m: m["type"] == "status.instance" and m["instance"]["id"] == instance.pk
    )
    assert message["instance"]["state"] == "shutoff"
    assert message["public"]["state"] == "shutoff" and "host" not in message["public"]
    instance.refresh_from_db()
    assert instance.state == "shutoff"
    print(f"\ntest driver: destroy -> status.instance in {(at - before) * 1000:.1f} ms")

    dom.create()
    wait_until(lambda: Instance.objects.get(pk=instance.pk).state == "running")
    dom.suspend()
    wait_until(lambda: Instance.objects.get(pk=instance.pk).state == "paused")
    dom.resume()
    wait_until(lambda: Instance.objects.get(pk=instance.pk).state == "running")


def test_jobs_states_are_left_alone(test_host, admin_user, conn, domains, run_watcher):
    domains("wx-busy")
    instance = instance_adopt(user=admin_user, host=test_host, domain_name="wx-busy")
    Instance.objects.filter(pk=instance.pk).update(state=Instance.State.BUILDING)
    watcher = run_watcher()
    wait_until(lambda: _watching(watcher, test_host.pk), timeout=10)
    conn.lookupByName("wx-busy").destroy()
    # A later event of another domain is applied, so this one was seen (in order) and skipped.
    domains("wx-later")
    other = instance_adopt(user=admin_user, host=test_host, domain_name="wx-later")
    conn.lookupByName("wx-later").destroy()
    wait_until(lambda: Instance.objects.get(pk=other.pk).state == "shutoff")
    assert Instance.objects.get(pk=instance.pk).state == "building"


def test_unmanaged_domain_events_refresh_the_host_list(test_host, domains, run_watcher):
    watcher = run_watcher()
    wait_until(lambda: _watching(watcher, test_host.pk), timeout=10)

    def unmanaged() -> set[str]:
        test_host.refresh_from_db()
        return {d["name"] for d in test_host.unmanaged_domains}

    assert "wx-stray" not in unmanaged()
    dom = domains("wx-stray", start=False)  # defined only: one "defined" event
    wait_until(lambda: "wx-stray" in unmanaged())
    dom.undefine()
    wait_until(lambda: "wx-stray" not in unmanaged())


def test_metrics_sweep_records_and_filters_per_project(
    test_host, admin_user, domains, run_watcher, listen
):
    one, two = Project.objects.create(name="p-one"), Project.objects.create(name="p-two")
    domains("wx-m1")
    domains("wx-m2")
    first = instance_adopt(user=admin_user, host=test_host, domain_name="wx-m1", project=one)
    second = instance_adopt(user=admin_user, host=test_host, domain_name="wx-m2", project=two)
    admins, ones, twos = (
        listen(ADMIN_GROUP),
        listen(project_group(one.pk)),
        listen(project_group(two.pk)),
    )
    run_watcher(stats_interval=0.2)

    def metrics_msg(m):
        return m["type"] == "status.metrics" and m["host"] == test_host.pk

    _, admin_msg = admins.wait_for(metrics_msg, timeout=10)
    ids = {e["id"] for e in admin_msg["instances"]}
    assert {first.pk, second.pk} <= ids
    assert admin_msg["host_totals"]["instances"] == len(admin_msg["instances"])
    _, one_msg = ones.wait_for(metrics_msg)
    _, two_msg = twos.wait_for(metrics_msg)
    assert [e["id"] for e in one_msg["instances"]] == [first.pk]
    assert [e["id"] for e in two_msg["instances"]] == [second.pk]
    assert "host_totals" not in one_msg and "host_totals" not in two_msg
    for entry in admin_msg["instances"]:
        assert set(entry) == {"id", "project", "t", *metrics_keys()}

    samples = wait_until(lambda: len(metrics.recent(metrics.INSTANCE, first.pk)) >= 2, timeout=10)
    assert samples
    recent = metrics.recent(metrics.INSTANCE, first.pk)
    assert recent[0]["t"] <= recent[-1]["t"]
    assert metrics.recent(metrics.HOST, test_host.pk)[-1]["instances"] >= 2


def metrics_keys() -> set[str]:
    from cloudpanel.virt.stats import SAMPLE_KEYS

    return set(SAMPLE_KEYS)


def test_the_store_stays_bounded(settings, test_host, admin_user, domains, run_watcher):
    settings.METRICS_RETENTION_SECONDS = 1  # capacity() = 1 s / 0.2 s + 1 = 6 samples
    settings.WATCHER_STATS_INTERVAL = 0.2
    domains("wx-bound")
    instance = instance_adopt(user=admin_user, host=test_host, domain_name="wx-bound")
    watcher = run_watcher()
    wait_until(
        lambda: (
            watcher.watches.get(test_host.pk)
            and watcher.watches[test_host.pk].sweeps > metrics.capacity() + 3
        ),
        timeout=15,
    )
    assert len(metrics.recent(metrics.INSTANCE, instance.pk)) == metrics.capacity() == 6
