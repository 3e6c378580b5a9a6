"""Fixtures for cold migration tests: those of the instance tests (tiny flavor, images, the
in-process job runner), and a shut-off instance on the TCG lab host."""

from __future__ import annotations

import contextlib

import pytest

from cloudpanel.virt import VirtError, domains, storage
from hosts.connection import connection_uri
from instances import operations
from instances.models import Instance
from tests.instances.conftest import (  # noqa: F401 - fixtures
    _in_memory_channels,
    make_image,
    run_ok,
    tiny_flavor,
)
from tests.instances.test_create_identity import cloud_init_image_fields


@pytest.fixture
def seeded_image(default_project, settings):
    """A cloud-init image: its instances have a root disk and a NoCloud seed volume."""
    return make_image(default_project, settings, **cloud_init_image_fields())


@pytest.fixture
def make_shutoff_instance(lab_hosts, admin_user, seeded_image, tiny_flavor):  # noqa: F811
    """Makes an instance through the panel on lab1 (TCG), then powers it off: an OS-less tiny
    guest. Whatever the test did, its domain and disks are removed from both hosts after."""
    made = []

    def make(name: str = "mover") -> Instance:
        job = run_ok(
            operations.CREATE.start(
                user=admin_user, name=name, image=seeded_image, flavor=tiny_flavor,
                host=lab_hosts[1], hostname=name,
            )
        )  # fmt: skip
        instance = Instance.objects.get(pk=job.target_id)
        made.append((instance.domain_name, [(v.pool, v.name) for v in instance.volumes.all()]))
        run_ok(operations.POWER["stop"].start(user=admin_user, target=instance))
        instance.refresh_from_db()
        assert instance.state == Instance.State.SHUTOFF
        return instance

    yield make
    for domain, volumes in made:
        for host in lab_hosts:
            uri = connection_uri(host)
            with contextlib.suppress(VirtError):
                domains.undefine_domain(uri, domain)
            for pool, name in volumes:
                with contextlib.suppress(VirtError):
                    storage.delete_volume(uri, pool, name)


@pytest.fixture
def shutoff_instance(make_shutoff_instance):
    return make_shutoff_instance()
