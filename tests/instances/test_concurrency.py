"""Concurrent creates: never a 500 ('database is locked'), never more than the host holds."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from hosts.selectors import MIB, host_capacity
from instances.models import Flavor, Instance

from .conftest import make_image

pytestmark = pytest.mark.django_db(transaction=True)


def test_parallel_creates_fill_the_host_exactly(admin_user, test_host, default_project, settings):
    test_host.storage_pools = [{"name": "default", "active": True, "capacity_bytes": 10**12}]
    test_host.save()
    limit_mib = host_capacity(test_host).ram.limit / MIB
    flavor = Flavor.objects.create(name="third", vcpus=1, ram_mib=int(limit_mib // 3), disk_gib=1)
    image = make_image(default_project, settings)
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        client = APIClient()
        client.force_authenticate(admin_user)
        barrier.wait()
        try:
            response = client.post(
                "/api/v1/instances/",
                {"name": f"vm{i}", "image": image.id, "flavor": flavor.id},
                format="json",
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(statuses) == [202, 202, 202, 400, 400, 400, 400, 400], statuses
    assert Instance.objects.filter(host=test_host).count() == 3
