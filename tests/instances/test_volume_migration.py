"""The Volume data migration: a database holding instances' JSON volume lists comes out
with one Volume row per entry, on the instance's host, and back again."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("instances", "0002_snapshot")
AFTER = ("instances", "0003_volume")


def _migrate(instances_at):
    """Migrate instances to `instances_at`, every other app to its latest."""
    executor = MigrationExecutor(connection)
    leaves = [n for n in executor.loader.graph.leaf_nodes() if n[0] != "instances"]
    targets = [*leaves, instances_at]
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def _latest_schema_afterwards():
    """Whatever happens here, the tests after this one get the whole schema back (every
    app at its latest migration), not instances stopped at AFTER."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_json_volumes_become_rows_and_back():
    old = _migrate(BEFORE)
    Project = old.get_model("projects", "Project")
    Host = old.get_model("hosts", "Host")
    Flavor = old.get_model("instances", "Flavor")
    Instance = old.get_model("instances", "Instance")
    project = Project.objects.create(name="p")
    host = Host.objects.create(name="h", uri="test:///default", transport="test")
    flavor = Flavor.objects.create(name="f", vcpus=1, ram_mib=64, disk_gib=1)
    made = Instance.objects.create(
        name="made", project=project, flavor=flavor, host=host, domain_name="cp-1",
        volumes=[
            {"pool": "default", "name": "cp-1-disk0.qcow2", "role": "root", "path": "/p/d0"},
            {"pool": "fast", "name": "cp-1-data.qcow2", "capacity_bytes": 1024},
        ],
    )  # fmt: skip
    # Written before the disk existed (no path yet), from before roles were recorded.
    Instance.objects.create(
        name="half", project=project, flavor=flavor, host=host, domain_name="cp-2",
        volumes=[{"pool": "default", "name": "cp-2-disk0.qcow2"}],
    )  # fmt: skip
    Instance.objects.create(name="nohost", project=project, flavor=flavor, volumes=[])

    new = _migrate(AFTER)
    Volume = new.get_model("instances", "Volume")
    rows = {
        v.name: (v.instance.name, v.host_id, v.pool, v.path, v.role, v.state, v.capacity_bytes)
        for v in Volume.objects.select_related("instance")
    }
    assert rows == {
        "cp-1-disk0.qcow2": ("made", host.pk, "default", "/p/d0", "root", "ready", 0),
        "cp-1-data.qcow2": ("made", host.pk, "fast", "", "data", "creating", 1024),
        "cp-2-disk0.qcow2": ("half", host.pk, "default", "", "root", "creating", 0),
    }
    assert "volumes" not in {f.name for f in new.get_model("instances", "Instance")._meta.fields}

    back = _migrate(BEFORE)
    again = back.get_model("instances", "Instance").objects.get(pk=made.pk)
    assert [v["name"] for v in again.volumes] == ["cp-1-disk0.qcow2", "cp-1-data.qcow2"]
    _migrate(AFTER)
