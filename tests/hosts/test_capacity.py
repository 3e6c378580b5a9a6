"""Disk capacity is the default pool's space, counted once."""

from __future__ import annotations

import pytest

from hosts.models import Host
from hosts.selectors import GIB, host_capacity

pytestmark = pytest.mark.django_db


def test_disk_capacity_is_the_default_pools_not_a_sum_over_pools():
    # Two pools on one filesystem (images, and a shared or ISO pool beside it) report the
    # same space: summing them would offer it twice.
    host = Host.objects.create(
        name="two-pools", uri="test:///default", default_pool="images",
        capabilities={"cpus": 4, "memory_bytes": 8 * GIB},
        storage_pools=[
            {"name": "images", "active": True, "capacity_bytes": 100 * GIB},
            {"name": "iso", "active": True, "capacity_bytes": 100 * GIB},
            {"name": "old", "active": False, "capacity_bytes": 500 * GIB},
        ],
    )  # fmt: skip
    assert host_capacity(host).disk.physical == 100 * GIB
    host.default_pool = "old"  # inactive: nothing to place disks on
    host.save()
    assert host_capacity(host).disk.physical == 0
