"""Fixtures for cold migration tests: those of the instance tests (tiny flavor, images, the
in-process job runner), and a shut-off instance on the TCG lab host."""

from __future__ import annotations

import pytest

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
def shutoff_instance(lab_hosts, admin_user, seeded_image, tiny_flavor):  # noqa: F811
    """Made through the panel on lab1 (TCG), then powered off: an OS-less tiny guest."""
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="mover", image=seeded_image, flavor=tiny_flavor,
            host=lab_hosts[1], hostname="mover",
        )
    )  # fmt: skip
    instance = Instance.objects.get(pk=job.target_id)
    run_ok(operations.POWER["stop"].start(user=admin_user, target=instance))
    instance.refresh_from_db()
    assert instance.state == Instance.State.SHUTOFF
    return instance
