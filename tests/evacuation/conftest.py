"""Evacuation, host loss and rebuild: the instance fixtures, and a lab of our own for the
lost-host test (its host is stopped for good; the session lab stays intact)."""

from __future__ import annotations

import pytest

from tests.instances.conftest import (  # noqa: F401 - fixtures
    _in_memory_channels,
    qcow2_image,
    tiny_flavor,
)


@pytest.fixture
def member(db, member_user, default_project):
    from cloudpanel.projects.services import membership_set

    membership_set(project=default_project, user=member_user)
    return member_user


@pytest.fixture
def dead_host(db):
    """A registered host that was online once and answers no more."""
    from datetime import timedelta

    from django.utils import timezone

    from hosts.models import Host

    return Host.objects.create(
        name="gone",
        uri="qemu+tcp://127.0.0.1:9/system",
        status=Host.Status.OFFLINE,
        last_seen_at=timezone.now() - timedelta(minutes=10),
        capabilities={"cpus": 4, "memory_bytes": 8 << 30},
        storage_pools=[{"name": "default", "active": True, "capacity_bytes": 100 << 30}],
    )


@pytest.fixture(scope="module")
def loss_lab(lab):
    """Two TCG lab hosts of this module's own: one of them is stopped for good."""
    from tests.conftest import disposable_lab

    with disposable_lab("loss") as the_lab:
        yield the_lab
