"""Mirror API and page refusals and shapes, on libvirt's test driver (no lab): admins only
(tenants 403 on their instances, 404 on others'), running instances only, one active mirror
per disk, pools the host has."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership, Project
from hosts.models import Host
from instances.models import DiskMirror, Instance, Volume

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def instance(test_host, default_project, tiny_flavor):
    return Instance.objects.create(
        name="vm", project=default_project, flavor=tiny_flavor, host=test_host,
        domain_name="cp-vm", state=Instance.State.RUNNING,
    )  # fmt: skip


@pytest.fixture
def stopped_mirror(instance, test_host):
    volume = Volume.objects.create(
        host=test_host, instance=instance, pool="shared", name="cp-vm-vda-mirror1.qcow2",
        path="/var/lib/libvirt/shared/cp-vm-vda-mirror1.qcow2", role=Volume.Role.MIRROR,
        state=Volume.State.READY, disk_target="vda",
    )  # fmt: skip
    return DiskMirror.objects.create(
        instance=instance, disk_target="vda", volume=volume, state=DiskMirror.State.STOPPED,
        synced_at=timezone.now(),
    )  # fmt: skip


@pytest.fixture
def member(member_user, default_project):
    Membership.objects.create(project=default_project, user=member_user)
    return member_user


def urls(instance, mirror) -> list[tuple[str, str]]:
    base = f"/api/v1/instances/{instance.pk}/mirrors/"
    return [
        ("get", base),
        ("post", base),
        ("post", f"{base}{mirror.pk}/pivot/"),
        ("post", f"{base}{mirror.pk}/stop/"),
    ]


def test_tenants_get_403_on_their_instance_and_404_on_others(
    instance, stopped_mirror, member, django_user_model
):
    outsider = django_user_model.objects.create_user("bob", password="pw-bob-12345")
    Membership.objects.create(project=Project.objects.create(name="other"), user=outsider)
    for method, url in urls(instance, stopped_mirror):
        resp = getattr(client_for(member), method)(url, {"pool": "shared"}, format="json")
        assert resp.status_code == 403, (url, resp.content)
        resp = getattr(client_for(outsider), method)(url, {"pool": "shared"}, format="json")
        assert resp.status_code == 404, (url, resp.content)
    assert not Job.objects.exists()


def test_admin_lists_mirrors(api_client, instance, stopped_mirror):
    resp = api_client.get(f"/api/v1/instances/{instance.pk}/mirrors/")
    assert resp.status_code == 200
    (row,) = resp.json()
    assert row["id"] == stopped_mirror.pk
    assert (row["disk"], row["state"], row["pool"], row["volume_name"]) == (
        "vda", "stopped", "shared", "cp-vm-vda-mirror1.qcow2"
    )  # fmt: skip
    assert row["synced_at"] and row["path"].startswith("/var/lib/libvirt/shared/")


def test_admin_refusals(api_client, instance, stopped_mirror):
    base = f"/api/v1/instances/{instance.pk}/mirrors/"
    # A pool is required; the host must have it.
    assert api_client.post(base, {}, format="json").status_code == 400
    resp = api_client.post(base, {"pool": "no-such-pool"}, format="json")
    assert resp.status_code == 400 and "no-such-pool" in resp.content.decode()
    # A stopped mirror has nothing to pivot or stop; another instance's mirror is unknown.
    for action in ("pivot", "stop"):
        resp = api_client.post(f"{base}{stopped_mirror.pk}/{action}/")
        assert resp.status_code == 409, resp.content
        resp = api_client.post(f"/api/v1/instances/{instance.pk}/mirrors/999999/{action}/")
        assert resp.status_code == 404
    # One active mirror per disk.
    DiskMirror.objects.create(instance=instance, disk_target="vda", state="mirrored")
    resp = api_client.post(base, {"pool": "shared"}, format="json")
    assert resp.status_code == 409 and "mirrored already" in resp.json()["detail"]
    # Only a running instance.
    Instance.objects.filter(pk=instance.pk).update(state=Instance.State.SHUTOFF)
    resp = api_client.post(base, {"disk": "vdb", "pool": "shared"}, format="json")
    assert resp.status_code == 409 and "cannot mirror a disk" in resp.json()["detail"]
    assert not Job.objects.exists()


def test_schema_documents_mirror_endpoints(api_client):
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert "post" in paths["/api/v1/instances/{id}/mirrors/"]
    assert "get" in paths["/api/v1/instances/{id}/mirrors/"]
    assert "/api/v1/instances/{id}/mirrors/{mid}/pivot/" in paths
    assert "/api/v1/instances/{id}/mirrors/{mid}/stop/" in paths


def test_page_card_for_admins_only(admin_user, member, instance, stopped_mirror):
    admin = Client()
    admin.force_login(admin_user)
    page = admin.get(f"/instances/{instance.pk}/").content.decode()
    assert 'id="mirrors"' in page and f'data-mirror="{stopped_mirror.pk}"' in page
    assert "shared/cp-vm-vda-mirror1.qcow2" in page and "Start mirror" in page
    assert "/pivot/" not in page  # a stopped copy is no longer pivotable

    # The steady state, with its buttons (host offline: the page does not refresh it from
    # libvirt, whose test driver has no such block job).
    DiskMirror.objects.filter(pk=stopped_mirror.pk).update(state=DiskMirror.State.MIRRORED)
    Host.objects.filter(pk=instance.host_id).update(status=Host.Status.OFFLINE)
    page = admin.get(f"/instances/{instance.pk}/").content.decode()
    assert 'data-mirror-state="mirrored"' in page
    assert '<span class="badge badge-ok">Mirrored</span>' in page
    assert f"/mirrors/{stopped_mirror.pk}/pivot/" in page
    assert f"/mirrors/{stopped_mirror.pk}/stop/" in page

    tenant = Client()
    tenant.force_login(member)
    page = tenant.get(f"/instances/{instance.pk}/").content.decode()
    assert 'id="mirrors"' not in page and "mirror1" not in page
    resp = tenant.post(f"/instances/{instance.pk}/mirrors/", {"pool": "shared"})
    assert resp.status_code == 403
    resp = tenant.post(f"/instances/{instance.pk}/mirrors/{stopped_mirror.pk}/stop/")
    assert resp.status_code == 403
    assert not Job.objects.exists()


def test_page_start_shows_the_refusal(admin_user, instance):
    admin = Client()
    admin.force_login(admin_user)
    resp = admin.post(f"/instances/{instance.pk}/mirrors/", {"pool": "no-such-pool"}, follow=True)
    assert resp.status_code == 200
    assert "no storage pool no-such-pool" in resp.content.decode()
    assert not Job.objects.exists()


def test_abandoned_start_fails_its_mirror_and_leaves_the_instance_as_it_was(admin_user, instance):
    from instances.operations.mirror import MIRROR_START

    job = Job.objects.create(
        kind=MIRROR_START.kind, target_type="instance", target_id=instance.pk,
        status=Job.Status.FAILED, error="worker lost", started_at=timezone.now(),
    )  # fmt: skip
    Instance.objects.filter(pk=instance.pk).update(current_job=job)
    mirror = DiskMirror.objects.create(instance=instance, disk_target="vda", job=job)
    MIRROR_START.on_abandoned(job)
    mirror.refresh_from_db()
    assert mirror.state == DiskMirror.State.FAILED and "worker lost" in mirror.error
    instance.refresh_from_db()
    assert (instance.state, instance.current_job) == ("running", None)
