"""The instance pages render for admins and members, and their forms call the services."""

import pytest
from django.test import Client

from cloudpanel.jobs.models import Job
from hosts.models import Host
from instances.models import Flavor, Instance

from .conftest import make_image

pytestmark = pytest.mark.django_db
GIB = 1024**3


@pytest.fixture
def host(test_host):
    test_host.storage_pools = [{"name": "default", "active": True, "capacity_bytes": 100 * GIB}]
    test_host.save()
    return test_host


@pytest.fixture
def admin_client(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


def test_create_list_detail_and_actions(admin_client, host, default_project, settings, tiny_flavor):
    image = make_image(default_project, settings)
    resp = admin_client.get("/instances/new/")
    assert resp.status_code == 200 and b"Create instance" in resp.content
    resp = admin_client.post(
        "/instances/new/", {"name": "bad<name", "image": image.pk, "flavor": tiny_flavor.pk}
    )
    assert resp.status_code == 200 and Instance.objects.count() == 0
    resp = admin_client.post(
        "/instances/new/", {"name": "page-vm", "image": image.pk, "flavor": tiny_flavor.pk}
    )
    assert resp.status_code == 302
    instance = Instance.objects.get(name="page-vm")
    job = instance.current_job

    resp = admin_client.get("/instances/")
    assert resp.status_code == 200
    assert f'data-job-id="{job.id}"'.encode() in resp.content
    assert b"state-building" in resp.content

    resp = admin_client.get(f"/instances/{instance.pk}/")
    assert resp.status_code == 200
    assert b"Job history" in resp.content and b"instance.create" in resp.content

    # A second action while the create job is pending: a message, not an error page.
    resp = admin_client.post(f"/instances/{instance.pk}/action/stop/", follow=True)
    assert resp.status_code == 200 and b"busy" in resp.content
    Job.objects.update(status="succeeded")
    Instance.objects.update(current_job=None, state="running")
    resp = admin_client.post(f"/instances/{instance.pk}/action/stop/")
    assert resp.status_code == 302
    assert Job.objects.filter(kind="instance.stop", target_id=instance.pk).exists()


def test_host_offline_action_shows_reason(
    admin_client, host, default_project, settings, tiny_flavor
):

    image = make_image(default_project, settings)
    resp = admin_client.post(
        "/instances/new/", {"name": "off", "image": image.pk, "flavor": tiny_flavor.pk}
    )
    assert resp.status_code == 302
    Job.objects.update(status="succeeded")
    Instance.objects.update(current_job=None, state="running")
    Host.objects.update(status="offline", last_error="Connection refused")
    inst = Instance.objects.get(name="off")
    resp = admin_client.post(f"/instances/{inst.pk}/action/reboot/", follow=True)
    assert b"offline" in resp.content
    assert not Job.objects.filter(kind="instance.reboot").exists()


def test_flavor_pages_admin_only(admin_client, member_user):
    resp = admin_client.post(
        "/instances/flavors/", {"name": "f1", "vcpus": 1, "ram_mib": 64, "disk_gib": 1}
    )
    assert resp.status_code == 302 and Flavor.objects.filter(name="f1").exists()
    resp = admin_client.get("/instances/flavors/")
    assert resp.status_code == 200 and b"f1" in resp.content
    member = Client()
    member.force_login(member_user)
    assert member.get("/instances/flavors/").status_code in (302, 403)
    assert member.get("/instances/").status_code == 200
