"""Lost hosts on libvirt's test driver: mark_lost_hosts marks their instances host-down
after the grace period; a host that returns gives them back their domain's real state, and
reconcile lists the domain of an instance rebuilt elsewhere as a leftover, never attaching
it again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cloudpanel.virt import list_domains
from hosts.connection import connection_uri
from hosts.models import Host
from hosts.tasks import mark_lost_hosts
from instances import hostdown
from instances.models import Flavor, Instance
from instances.reconcile import ReconcileReport, reconcile_host
from instances.signals import instance_changed

pytestmark = pytest.mark.django_db


@pytest.fixture
def flavor(db):
    return Flavor.objects.create(name="f1", vcpus=1, ram_mib=64, disk_gib=1)


def _instance(project, flavor, host, name, state="running", **fields) -> Instance:
    return Instance.objects.create(
        name=name, project=project, flavor=flavor, host=host, state=state,
        domain_name=fields.pop("domain_name", f"cp-{name}"), **fields,
    )  # fmt: skip


@pytest.fixture
def changes():
    seen = []

    def record(sender, instance, **kwargs):
        seen.append((instance.pk, instance.state))

    instance_changed.connect(record, dispatch_uid="test-hostdown-changes")
    yield seen
    instance_changed.disconnect(dispatch_uid="test-hostdown-changes")


def test_mark_lost_hosts_after_the_grace_period(
    settings, dead_host, test_host, default_project, flavor, changes
):
    running = _instance(default_project, flavor, dead_host, "a")
    shutoff = _instance(default_project, flavor, dead_host, "b", state="shutoff")
    building = _instance(default_project, flavor, dead_host, "c", state="building")
    elsewhere = _instance(default_project, flavor, test_host, "d")  # host online

    settings.HOST_DOWN_GRACE_SECONDS = 3600  # seen ten minutes ago: still within grace
    assert mark_lost_hosts() == {}
    assert Instance.objects.get(pk=running.pk).state == "running"

    settings.HOST_DOWN_GRACE_SECONDS = 0
    assert mark_lost_hosts() == {"gone": 2}
    for instance, was in ((running, "running"), (shutoff, "shutoff")):
        instance.refresh_from_db()
        assert instance.state == Instance.State.HOST_DOWN
        assert "gone" in instance.state_reason and "offline since" in instance.state_reason
        assert f"{dead_host.last_seen_at:%Y-%m-%d %H:%M:%S}" in instance.state_reason
        assert f"was {was}" in instance.state_reason
    assert Instance.objects.get(pk=building.pk).state == "building"  # its job decides
    assert Instance.objects.get(pk=elsewhere.pk).state == "running"
    assert sorted(changes) == sorted([(running.pk, "host-down"), (shutoff.pk, "host-down")])

    changes.clear()
    assert mark_lost_hosts() == {"gone": 0}  # marked once
    assert changes == []


def test_host_in_error_is_lost_too_but_never_seen_is_not(settings, db, default_project, flavor):
    settings.HOST_DOWN_GRACE_SECONDS = 0
    failing = Host.objects.create(
        name="failing", uri="qemu+tcp://127.0.0.1:7/system", status=Host.Status.ERROR,
        last_seen_at=timezone.now() - timedelta(seconds=5),
    )  # fmt: skip
    never = Host.objects.create(
        name="never", uri="qemu+tcp://127.0.0.1:8/system", status=Host.Status.ERROR
    )
    lost = _instance(default_project, flavor, failing, "e")
    kept = _instance(default_project, flavor, never, "f", state="shutoff")
    assert mark_lost_hosts() == {"failing": 1}
    assert Instance.objects.get(pk=lost.pk).state == "host-down"
    assert Instance.objects.get(pk=kept.pk).state == "shutoff"


def test_returning_host_gives_host_down_instances_their_real_state(
    test_host, default_project, flavor, changes
):
    # The test driver's own domain "test" runs: the host came back with it.
    instance = _instance(
        default_project, flavor, test_host, "back", state="host-down", domain_name="test",
        state_reason="Host demo has been offline since ...",
    )  # fmt: skip
    gone = _instance(default_project, flavor, test_host, "vanished", state="host-down")
    # The test driver's domain is shared by the whole process: earlier tests may have
    # paused it. Whatever libvirt says now is the state to come back with.
    real = next(d.state for d in list_domains(connection_uri(test_host)) if d.name == "test")
    hostdown.on_host_back(sender=Host, host=test_host)
    instance.refresh_from_db()
    assert instance.state == real and instance.state_reason == ""
    assert instance.host_id == test_host.pk
    assert Instance.objects.get(pk=gone.pk).state == "missing"  # no domain came back
    assert (instance.pk, real) in changes


def test_reconcile_lists_the_domain_of_an_instance_now_elsewhere_as_leftover(
    test_host, dead_host, default_project, flavor
):
    uri = connection_uri(test_host)
    dom = next(d for d in list_domains(uri) if d.name == "test")
    # Rebuilt on another host: same uuid, same domain name, the row names the other host.
    moved = _instance(
        default_project, flavor, dead_host, "moved", domain_name="test", uuid=dom.uuid
    )
    report = ReconcileReport()
    reconcile_host(test_host, report)

    test_host.refresh_from_db()
    [leftover] = [d for d in test_host.unmanaged_domains if d["name"] == "test"]
    assert leftover["leftover_of"] == moved.pk
    assert leftover["leftover_of_name"] == "moved"
    assert leftover["instance_host"] == dead_host.name
    assert leftover["uuid"] == dom.uuid
    moved.refresh_from_db()
    assert moved.host_id == dead_host.pk and moved.state == "running"  # not re-attached
    assert report.found == [] and report.fixed == []

    # An instance a job is moving (a migration) may be on both hosts for a while.
    from cloudpanel.jobs.models import Job

    moved.current_job = Job.objects.create(
        kind="instance.migrate", target_type="instance", target_id=moved.pk, status="running"
    )
    moved.save()
    reconcile_host(test_host, ReconcileReport())
    test_host.refresh_from_db()
    assert not [d for d in test_host.unmanaged_domains if d.get("leftover_of")]


def test_a_domain_no_instance_knows_is_unmanaged_not_leftover(test_host):
    reconcile_host(test_host, ReconcileReport())
    test_host.refresh_from_db()
    [dom] = [d for d in test_host.unmanaged_domains if d["name"] == "test"]
    assert "leftover_of" not in dom


def test_how_a_host_reaches_a_copy(test_host, dead_host, default_project, flavor):
    """A copy's file is used in place where the target sees it (same pool, same path: asked
    of libvirt), streamed from its own host while that answers, else unreachable."""
    from cloudpanel.virt import storage
    from instances.models import Volume

    uri = connection_uri(test_host)
    info = storage.create_volume(uri, "default-pool", "hd-copy.qcow2", 1 << 20, fmt="qcow2")
    try:
        instance = _instance(default_project, flavor, dead_host, "copied", state="host-down")
        row = Volume.objects.create(
            host=dead_host, instance=instance, pool="default-pool", name="hd-copy.qcow2",
            path=info.path, role="mirror", state="ready",
        )  # fmt: skip
        source = hostdown.RecoverySource("mirror", 1, row, None, "test")
        dead_host.storage_pools = [{"name": "default-pool", "active": True}]
        dead_host.save()
        test_host.refresh_from_db()
        assert hostdown.visible_on(row, test_host)
        assert hostdown.reach(source, test_host) == "shared"

        row.path = "/elsewhere/hd-copy.qcow2"  # same name, another file
        assert not hostdown.visible_on(row, test_host)
        assert hostdown.reach(source, test_host) is None  # its host is offline
        dead_host.status = Host.Status.ONLINE
        assert hostdown.reach(source, test_host) == "stream"
        row.pool = "no-such-pool"
        assert not hostdown.visible_on(row, test_host)
    finally:
        storage.delete_volume(uri, "default-pool", "hd-copy.qcow2")


def test_a_host_rebuilt_away_from_is_reconciled_when_it_returns(test_host):
    from cloudpanel.jobs.models import Job

    test_host.unmanaged_domains = []
    test_host.save()
    hostdown.on_host_back(sender=Host, host=test_host)  # nothing to look at: no libvirt call
    test_host.refresh_from_db()
    assert test_host.unmanaged_domains == []
    Job.objects.create(
        kind="instance.rebuild", target_type="instance", target_id=1, status="succeeded",
        result={"from_host": test_host.pk, "to_host": test_host.pk + 1},
    )  # fmt: skip
    assert hostdown.rebuilt_away_from(test_host)
    hostdown.on_host_back(sender=Host, host=test_host)
    test_host.refresh_from_db()
    assert [d["name"] for d in test_host.unmanaged_domains] == ["test"]


def test_reconcile_never_calls_missing_an_instance_a_migration_just_brought(
    test_host, dead_host, default_project, flavor, monkeypatch
):
    """The migration switches the row to this host and ends while reconcile lists the
    host's domains (the listing predates the domain's arrival): not 'missing'."""
    from cloudpanel import virt
    from cloudpanel.jobs.models import Job

    arriving = _instance(default_project, flavor, dead_host, "arriving")
    job = Job.objects.create(
        kind="instance.migrate", target_type="instance", target_id=arriving.pk, status="running"
    )
    Instance.objects.filter(pk=arriving.pk).update(current_job=job)
    real_list = virt.list_domains

    def list_then_migration_ends(uri):
        listed = real_list(uri)
        Instance.objects.filter(pk=arriving.pk).update(host=test_host, current_job=None)
        return listed

    monkeypatch.setattr(virt, "list_domains", list_then_migration_ends)
    report = ReconcileReport()
    reconcile_host(test_host, report)
    arriving.refresh_from_db()
    assert (arriving.host_id, arriving.state) == (test_host.pk, "running")
    assert report.missing == []
