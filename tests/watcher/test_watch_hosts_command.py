"""`manage.py watch_hosts` as a process: it takes a host's lease and gives it back on SIGTERM
(a clean exit never makes the next owner wait out the lease)."""

from __future__ import annotations

import pytest

from cloudpanel.live.metrics import client
from instances.watcher.lease import lease_key

from .conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_watch_hosts_owns_a_host_and_releases_it_on_sigterm(test_host, start_watcher):
    # test:///default: the watcher process gets a driver of its own, enough for the lease.
    watcher = start_watcher(WATCHER_LEASE_SECONDS="60")
    watcher.wait_line(rf"watching host {test_host.name} \(id {test_host.pk}\)")
    owner = client().get(lease_key(test_host.pk)).decode()
    assert f":{watcher.proc.pid}:" in owner
    assert client().pttl(lease_key(test_host.pk)) > 30_000

    watcher.terminate()
    assert watcher.proc.returncode == 0
    assert watcher.has_line("host watcher .* stopped")
    # Released at once, long before its 60 s would have run out.
    wait_until(lambda: not client().exists(lease_key(test_host.pk)), timeout=1)
    second = start_watcher(WATCHER_LEASE_SECONDS="60")
    second.wait_line(rf"watching host {test_host.name} \(id {test_host.pk}\)", timeout=15)
