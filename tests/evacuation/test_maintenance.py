"""Maintenance stops new placements (and migrations onto the host); the API and the host
page toggle it, for admins only. The evacuation and rebuild entry points refuse what they
must before any job exists."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from cloudpanel.errors import Conflict, PermissionDenied
from cloudpanel.jobs.models import Job
from hosts.models import Host
from hosts.operations import EVACUATE
from hosts.services import host_set_maintenance
from instances import scheduler
from instances.models import Flavor, Instance
from instances.operations.rebuild import REBUILD

pytestmark = pytest.mark.django_db


@pytest.fixture
def flavor(db):
    return Flavor.objects.create(name="f1", vcpus=1, ram_mib=64, disk_gib=1)


def test_maintenance_stops_placements(test_host, flavor):
    test_host.default_pool = "default-pool"  # the test driver's
    test_host.save()
    assert scheduler.select_host(flavor) == test_host
    host_set_maintenance(host=test_host, maintenance=True)
    test_host.refresh_from_db()
    assert test_host.maintenance and not test_host.is_schedulable
    with pytest.raises(scheduler.NoValidHost, match="in maintenance"):
        scheduler.select_host(flavor)
    with pytest.raises(scheduler.NoValidHost, match="in maintenance"):
        scheduler.select_host(flavor, pinned=test_host)
    host_set_maintenance(host=test_host, maintenance=False)
    assert scheduler.select_host(flavor) == test_host


def test_maintenance_host_is_no_migration_target(test_host, dead_host, default_project, flavor):
    from instances import placement

    instance = Instance.objects.create(
        name="m", project=default_project, flavor=flavor, host=dead_host, state="running",
        domain_name="cp-m",
    )  # fmt: skip
    host_set_maintenance(host=test_host, maintenance=True)
    problem = placement.compatibility_problem(instance, test_host, live=True)
    assert problem and "maintenance" in problem
    with pytest.raises(Conflict, match="maintenance"):
        placement.migration_target(instance=instance, host=test_host, live=False)


def test_maintenance_api_admin_only(api_client, test_host, member_user):
    url = f"/api/v1/hosts/{test_host.pk}/maintenance/"
    answer = api_client.post(url, {"maintenance": True}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["maintenance"] is True
    assert Host.objects.get(pk=test_host.pk).maintenance
    answer = api_client.post(url, {"maintenance": False}, format="json")
    assert answer.status_code == 200 and answer.json()["maintenance"] is False
    assert not Host.objects.get(pk=test_host.pk).maintenance
    assert api_client.post(url, {}, format="json").status_code == 400

    member = APIClient()
    member.force_authenticate(member_user)
    assert member.post(url, {"maintenance": True}, format="json").status_code == 403
    assert not Host.objects.get(pk=test_host.pk).maintenance


def test_maintenance_toggle_on_the_host_page(admin_user, test_host, member_user):
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/hosts/{test_host.pk}/").content.decode()
    assert 'data-action="maintenance-on"' in page and 'data-action="evacuate"' in page
    client.post(f"/hosts/{test_host.pk}/maintenance/", {"maintenance": "1"})
    assert Host.objects.get(pk=test_host.pk).maintenance
    page = client.get(f"/hosts/{test_host.pk}/").content.decode()
    assert 'data-action="maintenance-off"' in page and 'data-maintenance="on"' in page
    client.post(f"/hosts/{test_host.pk}/maintenance/", {"maintenance": "0"})
    assert not Host.objects.get(pk=test_host.pk).maintenance

    member = Client()
    member.force_login(member_user)
    member.post(f"/hosts/{test_host.pk}/maintenance/", {"maintenance": "1"})
    assert not Host.objects.get(pk=test_host.pk).maintenance


def test_evacuate_refusals(api_client, test_host, dead_host, member_user):
    with pytest.raises(PermissionDenied):
        EVACUATE.start(user=member_user, target=test_host)
    answer = api_client.post(f"/api/v1/hosts/{dead_host.pk}/evacuate/", {}, format="json")
    assert answer.status_code == 409 and "offline" in answer.json()["detail"]
    member = APIClient()
    member.force_authenticate(member_user)
    assert member.post(f"/api/v1/hosts/{test_host.pk}/evacuate/", {}).status_code == 403
    assert not Job.objects.filter(kind="host.evacuate").exists()


def test_evacuate_empty_host_reports_maintenance(api_client, test_host):
    from cloudpanel.jobs.services import job_execute

    answer = api_client.post(f"/api/v1/hosts/{test_host.pk}/evacuate/", {}, format="json")
    assert answer.status_code == 202, answer.content
    job = Job.objects.get(pk=answer.json()["id"])
    assert job.kind == "host.evacuate" and job.target_type == "host"
    assert job.params == {"include_shutoff": False}
    job_execute(job.id)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert "put in maintenance by this evacuation" in job.result["maintenance"]
    assert job.result["instances"] == [] and job.result["moved"] == 0
    assert Host.objects.get(pk=test_host.pk).maintenance


def test_rebuild_refusals(api_client, dead_host, default_project, flavor, member, settings):
    instance = Instance.objects.create(
        name="r", project=default_project, flavor=flavor, host=dead_host, state="running",
        domain_name="cp-r",
    )  # fmt: skip
    url = f"/api/v1/instances/{instance.pk}/rebuild/"
    answer = api_client.post(url, {}, format="json")
    assert answer.status_code == 409 and "host-down" in answer.json()["detail"]

    Instance.objects.filter(pk=instance.pk).update(state="host-down")
    answer = api_client.post(url, {}, format="json")
    assert answer.status_code == 409 and "no usable" in answer.json()["detail"]
    recovery = api_client.get(f"/api/v1/instances/{instance.pk}/recovery/").json()
    assert recovery["host_down"] is True and recovery["sources"] == []
    assert api_client.post(url, {"source": "tape"}, format="json").status_code == 400

    member_api = APIClient()
    member_api.force_authenticate(member)
    assert member_api.post(url, {}, format="json").status_code == 403
    assert member_api.get(f"/api/v1/instances/{instance.pk}/recovery/").status_code == 403
    with pytest.raises(PermissionDenied):
        REBUILD.start(user=member, target=instance)
    assert not Job.objects.filter(kind="instance.rebuild").exists()
