"""Jobs wait for a domain state on libvirt's lifecycle events (cloudpanel/virt/waiter.py).

On the real lab: the state changes behind the panel's back (virsh, its own connection), and
the waiter says why it woke. The change is made from the job context's cancellation check,
which the waiter calls only once it is armed and has read the state: the change always
lands while it waits, never before (no sleeps, no timing assertions).
"""

from __future__ import annotations

import pytest

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import JobCancelled, JobContext
from cloudpanel.virt import get_pool, waiter
from instances import operations
from instances.models import Instance
from instances.operations.base import wait_for
from lab import virsh

from .conftest import dom_state, run_ok, uri_of

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]

BOUND = 60.0  # generous: only a bound, never what is asserted


class ActingContext(JobContext):
    """A job context whose first cancellation check runs `act` (the waiter is armed by then)."""

    def __init__(self, job: Job, act=None):
        super().__init__(job)
        self.act, self.checks = act, 0

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.checks == 1 and self.act is not None:
            self.act()
        super().check_cancelled()


@pytest.fixture
def vm(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    """A running lab instance (TCP host) and its finished create job."""
    host = lab_hosts[0]
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="waiter", image=qcow2_image, flavor=tiny_flavor, host=host
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    yield host, instance, job
    instance.refresh_from_db()
    run_ok(operations.DELETE.start(user=admin_user, target=instance))


def test_wakes_on_the_lifecycle_event(vm, monkeypatch):
    host, instance, job = vm
    uri, name = uri_of(host), instance.domain_name
    # Polls so rare that only the event can end the wait within the bound.
    monkeypatch.setattr(waiter, "FALLBACK_POLL", BOUND)
    ctx = ActingContext(job, act=lambda: virsh(uri, "destroy", name))
    waited = wait_for(ctx, uri, name, {"shutoff"}, BOUND)
    assert waited and waited.state == "shutoff"
    assert waited.woke == "event", waited
    assert waited.events >= 1

    # And back: started behind the panel's back, the wait for running wakes the same way.
    ctx = ActingContext(job, act=lambda: virsh(uri, "start", name))
    waited = wait_for(ctx, uri, name, {"running"}, BOUND)
    assert (waited.reached, waited.woke) == (True, "event"), waited


def test_already_there_returns_at_once(vm):
    host, instance, job = vm
    waited = wait_for(JobContext(job), uri_of(host), instance.domain_name, {"running"}, BOUND)
    assert (waited.reached, waited.woke, waited.state) == (True, "initial", "running")


def test_lost_events_still_end_on_the_fallback_poll(vm):
    host, instance, job = vm
    uri, name = uri_of(host), instance.domain_name
    wait_for(JobContext(job), uri, name, {"running"}, BOUND)  # subscribes
    sub = waiter.registry.subscription(uri)
    assert sub is not None and sub.conn is get_pool().get(uri)
    # The callback goes away behind the waiter's back: it still thinks it is subscribed.
    sub.conn.domainEventDeregisterAny(sub.callback_id)
    try:
        ctx = ActingContext(job, act=lambda: virsh(uri, "destroy", name))
        waited = wait_for(ctx, uri, name, {"shutoff"}, BOUND)
        assert (waited.reached, waited.woke, waited.events) == (True, "poll", 0), waited
        assert dom_state(host, name) == "shut off"
    finally:
        waiter.registry._subscriptions.pop(uri, None)  # the next wait registers afresh


def test_reregisters_when_the_pool_reconnects(vm):
    host, instance, job = vm
    uri, name = uri_of(host), instance.domain_name
    wait_for(JobContext(job), uri, name, {"running"}, BOUND)
    old = waiter.registry.subscription(uri).conn
    get_pool().close(uri)  # as after a daemon restart: the next call opens a new connection
    ctx = ActingContext(job, act=lambda: virsh(uri, "suspend", name))
    waited = wait_for(ctx, uri, name, {"paused"}, BOUND)
    assert (waited.reached, waited.woke) == (True, "event"), waited
    assert waiter.registry.subscription(uri).conn is not old


def test_a_cancelled_job_stops_waiting(vm):
    host, instance, job = vm
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    with pytest.raises(JobCancelled):
        wait_for(JobContext(job), uri_of(host), instance.domain_name, {"paused"}, BOUND)
    assert dom_state(host, instance.domain_name) == "running"


def test_times_out_with_false(vm):
    host, instance, job = vm
    waited = wait_for(JobContext(job), uri_of(host), instance.domain_name, {"paused"}, 1.5)
    assert not waited
    assert (waited.woke, waited.state) == ("timeout", "running")


def test_power_jobs_wait_on_events(vm, admin_user):
    """Stop and start through the panel's own jobs end in the states they waited for."""
    host, instance, _ = vm
    stop = run_ok(operations.POWER["stop"].start(user=admin_user, target=instance))
    assert stop.result["state"] == "shutoff"
    instance.refresh_from_db()
    assert instance.state == "shutoff"
    run_ok(operations.POWER["start"].start(user=admin_user, target=instance))
    instance.refresh_from_db()
    assert instance.state == "running" == dom_state(host, instance.domain_name)
