"""The per-host lease on real Redis: one owner, compare-and-renew, expiry, release."""

from __future__ import annotations

import time

import pytest

from cloudpanel.live.metrics import client
from instances.watcher.lease import Leases, lease_key

from .conftest import wait_until

HOST = 987654  # no test creates that many hosts


@pytest.fixture
def two():
    a, b = Leases(client(), 1.0, token="owner-a"), Leases(client(), 1.0, token="owner-b")
    yield a, b
    client().delete(lease_key(HOST))


def test_one_owner_at_a_time(two):
    a, b = two
    assert a.acquire(HOST)
    assert not b.acquire(HOST)
    assert a.holds(HOST) and not b.holds(HOST)
    assert a.owner(HOST) == "owner-a"


def test_only_the_owner_renews(two):
    a, b = two
    assert a.acquire(HOST)
    assert b.renew([HOST]) == set()  # not b's lease: left as it is
    assert client().get(lease_key(HOST)) == b"owner-a"
    assert a.renew([HOST]) == {HOST}
    assert 500 < client().pttl(lease_key(HOST)) <= 1000


def test_a_dead_owner_loses_the_host_when_the_lease_runs_out(two):
    a, b = two
    assert a.acquire(HOST)
    # a stops renewing (it died): b gets the host once the lease expired, not before.
    started = time.monotonic()
    wait_until(lambda: b.acquire(HOST), timeout=3)
    assert time.monotonic() - started > 0.5
    assert not a.holds(HOST)  # a's own view ran out before b could take it
    assert a.renew([HOST]) == set()  # and a stale a cannot take it back by renewing
    assert b.owner(HOST) == "owner-b"


def test_release_frees_only_ones_own_lease(two):
    a, b = two
    assert a.acquire(HOST)
    b.release(HOST)  # not b's: nothing happens
    assert a.owner(HOST) == "owner-a"
    a.release(HOST)
    assert not a.holds(HOST)
    assert b.acquire(HOST)


def test_local_view_ends_before_the_lease(two):
    a = Leases(client(), 2.5, token="owner-slow")  # its view ends 0.5 s before Redis's
    assert a.acquire(HOST)
    wait_until(lambda: not a.holds(HOST), timeout=5)
    assert client().exists(lease_key(HOST))  # Redis still has it: a stopped first
