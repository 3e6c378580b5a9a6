"""Who may cold-migrate what: admins only, shut-off instances only, no snapshots."""

from __future__ import annotations

import pytest

from cloudpanel.errors import Conflict, HostUnavailable, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership
from hosts.models import Host
from hosts.services import host_create
from instances.models import Instance, Snapshot
from instances.operations.cold_migrate import COLD_MIGRATE

pytestmark = pytest.mark.django_db


@pytest.fixture
def hosts(db):
    made = [host_create(name=f"h{i}", uri=f"test:///default?h={i}", sync=False) for i in range(2)]
    Host.objects.update(status=Host.Status.ONLINE)
    return [Host.objects.get(pk=h.pk) for h in made]


@pytest.fixture
def instance(hosts, default_project, tiny_flavor):
    return Instance.objects.create(
        name="vm", project=default_project, flavor=tiny_flavor, host=hosts[0],
        domain_name="cp-vm", state=Instance.State.SHUTOFF,
    )  # fmt: skip


def test_a_project_member_may_not_cold_migrate(instance, hosts, member_user):
    Membership.objects.create(
        user=member_user, project=instance.project, role=Membership.Role.MEMBER
    )
    with pytest.raises(PermissionDenied):
        COLD_MIGRATE.start(user=member_user, target=instance, host=hosts[1])
    assert not Job.objects.exists()


@pytest.mark.parametrize("state", [Instance.State.RUNNING, Instance.State.PAUSED])
def test_an_instance_that_is_not_shut_off_is_refused(instance, hosts, admin_user, state):
    Instance.objects.filter(pk=instance.pk).update(state=state)
    instance.refresh_from_db()
    with pytest.raises(Conflict, match="cannot be cold-migrated"):
        COLD_MIGRATE.start(user=admin_user, target=instance, host=hosts[1])
    assert not Job.objects.exists()


def test_an_instance_with_snapshots_is_refused(instance, hosts, admin_user):
    Snapshot.objects.create(instance=instance, name="before")
    with pytest.raises(Conflict, match="snapshots"):
        COLD_MIGRATE.start(user=admin_user, target=instance, host=hosts[1])


def test_an_offline_source_is_refused(instance, hosts, admin_user):
    Host.objects.filter(pk=hosts[0].pk).update(status=Host.Status.OFFLINE)
    instance.refresh_from_db()
    with pytest.raises(HostUnavailable, match="h0 is offline"):
        COLD_MIGRATE.start(user=admin_user, target=instance, host=hosts[1])


def test_the_migrate_action_refuses_tenants(instance, hosts, member_user):
    from rest_framework.test import APIClient

    Membership.objects.create(
        user=member_user, project=instance.project, role=Membership.Role.MEMBER
    )
    client = APIClient()
    client.force_authenticate(member_user)
    response = client.post(f"/api/v1/instances/{instance.pk}/migrate/", {}, format="json")
    assert response.status_code == 403
    assert not Job.objects.exists()
