"""A host's status transition, as the watcher reports it through the hosts services, reaches
the status stream with the new status, and only once the row says so."""

from __future__ import annotations

import pytest
from django.utils import timezone

from cloudpanel.live.publisher import ADMIN_GROUP
from hosts.models import Host
from hosts.services import host_check_health

pytestmark = pytest.mark.django_db(transaction=True)


def test_offline_transition_is_published_after_the_row_is_saved(listen):
    # Seen before, now nothing listens there: the next check takes it offline.
    host = Host.objects.create(
        name="gone", uri="qemu+tcp://127.0.0.1:1/system", status=Host.Status.ONLINE,
        last_seen_at=timezone.now(), synced_at=timezone.now(),
    )  # fmt: skip
    admins = listen(ADMIN_GROUP)
    host_check_health(host=host)
    _, message = admins.wait_for(lambda m: m["type"] == "status.host")
    assert message["host"]["id"] == host.pk
    assert message["host"]["status"] == "offline"  # the new status, not the old one
    assert Host.objects.get(pk=host.pk).status == "offline"
    assert host.events.get().to_status == "offline"
