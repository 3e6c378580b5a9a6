"""The instances and flavors API without a real hypervisor: validation, permissions, 202/409/503.

Jobs are created but not run here (their libvirt side is in test_lifecycle_lab.py).
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership, Project
from hosts.models import Host
from images.models import Image
from instances.models import Instance

from .conftest import make_image

pytestmark = pytest.mark.django_db

GIB = 1024**3


@pytest.fixture
def host(test_host):
    """The test-driver host, made schedulable: its snapshot gets an active 'default' pool."""
    assert test_host.status == Host.Status.ONLINE, test_host.last_error
    test_host.storage_pools = [
        {"name": "default", "active": True, "capacity_bytes": 100 * GIB},
    ]
    test_host.save()
    return test_host


@pytest.fixture
def image(default_project, settings):
    return make_image(default_project, settings)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def create(client, **data):
    return client.post("/api/v1/instances/", data, format="json")


def assert_nothing_created():
    assert Instance.objects.count() == 0
    assert Job.objects.count() == 0


# Flavors


def test_flavor_crud_by_admin_and_list_by_member(api_client, member_user):
    resp = api_client.post(
        "/api/v1/flavors/",
        {"name": "m1", "vcpus": 1, "ram_mib": 128, "disk_gib": 2},
        format="json",
    )
    assert resp.status_code == 201, resp.content
    fid = resp.json()["id"]
    resp = api_client.patch(f"/api/v1/flavors/{fid}/", {"ram_mib": 256}, format="json")
    assert resp.status_code == 200 and resp.json()["ram_mib"] == 256
    member = client_for(member_user)
    assert [f["name"] for f in member.get("/api/v1/flavors/").json()["results"]] == ["m1"]
    resp = member.post(
        "/api/v1/flavors/",
        {"name": "m2", "vcpus": 1, "ram_mib": 128, "disk_gib": 2},
        format="json",
    )
    assert resp.status_code == 403
    resp = api_client.post(
        "/api/v1/flavors/",
        {"name": "<bad>", "vcpus": 1, "ram_mib": 128, "disk_gib": 2},
        format="json",
    )
    assert resp.status_code == 400
    assert api_client.delete(f"/api/v1/flavors/{fid}/").status_code == 204


def test_flavor_in_use_cannot_be_deleted(api_client, host, image, tiny_flavor):
    assert create(api_client, name="a", image=image.pk, flavor=tiny_flavor.pk).status_code == 202
    resp = api_client.delete(f"/api/v1/flavors/{tiny_flavor.pk}/")
    assert resp.status_code == 409


# Create


def test_create_answers_202_with_job_and_instance(api_client, host, image, tiny_flavor):
    resp = create(api_client, name="web-1", image=image.pk, flavor=tiny_flavor.pk)
    assert resp.status_code == 202, resp.content
    data = resp.json()
    assert data["kind"] == "instance.create" and data["status"] == "pending"
    assert resp["Location"] == f"http://testserver/api/v1/jobs/{data['id']}/"
    instance = Instance.objects.get(pk=data["instance"])
    assert instance.state == "building"
    assert instance.host == host
    assert instance.domain_name == f"cp-{instance.uuid}"
    assert instance.project.name == "default"
    assert instance.current_job_id == data["id"]

    body = api_client.get(f"/api/v1/instances/{instance.pk}/").json()
    for key in (
        "id",
        "uuid",
        "name",
        "state",
        "host",
        "flavor",
        "image",
        "job",
        "project",
        "ip_addresses",
        "mac_address",
    ):
        assert key in body
    assert body["job"]["id"] == data["id"]

    # The job is pending: a second operation is refused with the running job.
    resp = api_client.delete(f"/api/v1/instances/{instance.pk}/")
    assert resp.status_code == 409
    assert resp.json()["job"]["id"] == data["id"]


@pytest.mark.parametrize(
    "name",
    ["", "a" * 64, "<script>", "a&b", "x'y", 'q"q', "has space", "-lead", "ünï"],
)
def test_bad_names_are_400(api_client, host, image, tiny_flavor, name):
    resp = create(api_client, name=name, image=image.pk, flavor=tiny_flavor.pk)
    assert resp.status_code == 400, resp.content
    assert "name" in resp.json()["errors"]
    assert_nothing_created()


def test_unknown_and_inactive_images_are_400(api_client, host, image, tiny_flavor):
    resp = create(api_client, name="a", image=999999, flavor=tiny_flavor.pk)
    assert resp.status_code == 400 and "image" in resp.json()["errors"]
    Image.objects.filter(pk=image.pk).update(status=Image.Status.IMPORTING)
    resp = create(api_client, name="a", image=image.pk, flavor=tiny_flavor.pk)
    assert resp.status_code == 400 and "not active" in str(resp.json()["errors"]["image"])
    assert_nothing_created()


def test_unknown_flavor_is_400(api_client, host, image):
    resp = create(api_client, name="a", image=image.pk, flavor=424242)
    assert resp.status_code == 400 and "flavor" in resp.json()["errors"]
    resp = create(api_client, name="a", image=image.pk, flavor="big")
    assert resp.status_code == 400
    assert_nothing_created()


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"min_disk_gib": 5}, "5 GiB of disk"),
        ({"min_ram_mib": 512}, "512 MiB of RAM"),
        ({"virtual_size": 3 * GIB}, "virtual size"),
    ],
)
def test_flavor_too_small_for_image_is_400(api_client, host, image, tiny_flavor, fields, words):
    Image.objects.filter(pk=image.pk).update(**fields)
    resp = create(api_client, name="a", image=image.pk, flavor=tiny_flavor.pk)
    assert resp.status_code == 400
    assert words in str(resp.json()["errors"]["flavor"])
    assert_nothing_created()


def test_no_host_with_capacity_is_400(api_client, host, image):
    from instances.services import flavor_create

    huge = flavor_create(name="huge", vcpus=256, ram_mib=4 * 1024 * 1024, disk_gib=1)
    resp = create(api_client, name="a", image=image.pk, flavor=huge.pk)
    assert resp.status_code == 400
    assert "No host has room" in str(resp.json())
    assert_nothing_created()


def test_no_schedulable_host_is_400(api_client, host, image, tiny_flavor):
    Host.objects.filter(pk=host.pk).update(maintenance=True)
    resp = create(api_client, name="a", image=image.pk, flavor=tiny_flavor.pk)
    assert resp.status_code == 400 and "maintenance" in str(resp.json())
    assert_nothing_created()


def test_pinned_host_without_capacity_is_400(api_client, host, image, tiny_flavor):
    Host.objects.filter(pk=host.pk).update(storage_pools=[])
    resp = create(api_client, name="a", image=image.pk, flavor=tiny_flavor.pk, host=host.pk)
    assert resp.status_code == 400
    assert "chosen host" in str(resp.json()["errors"]["host"])
    resp = create(api_client, name="a", image=image.pk, flavor=tiny_flavor.pk, host=98765)
    assert resp.status_code == 400
    assert_nothing_created()


def test_scheduler_prefers_most_free_ram(db, host, tiny_flavor):
    from hosts.services import host_create
    from instances.scheduler import select_host

    other = host_create(name="other", uri="test:///default?x=1", sync=False)
    other.status = Host.Status.ONLINE
    other.storage_pools = host.storage_pools
    other.capabilities = {
        **host.capabilities,
        "memory_bytes": host.capabilities["memory_bytes"] * 2,
    }
    other.save()
    assert select_host(tiny_flavor) == other
    assert select_host(tiny_flavor, pinned=host) == host


# Permissions


@pytest.fixture
def other_project(db):
    return Project.objects.create(name="other")


def test_members_see_and_act_only_in_their_projects(
    api_client, host, image, tiny_flavor, member_user, other_project, django_user_model
):
    Membership.objects.create(project=other_project, user=member_user)
    member = client_for(member_user)
    resp = create(
        member, name="mine", image=image.pk, flavor=tiny_flavor.pk, project=other_project.pk
    )
    assert resp.status_code == 202, resp.content
    mine = resp.json()["instance"]
    # Members may not pin hosts.
    resp = create(
        member,
        name="pinned",
        image=image.pk,
        flavor=tiny_flavor.pk,
        project=other_project.pk,
        host=host.pk,
    )
    assert resp.status_code == 403
    # An admin's instance in the default project is invisible to the member.
    theirs = create(api_client, name="theirs", image=image.pk, flavor=tiny_flavor.pk).json()
    ids = [i["id"] for i in member.get("/api/v1/instances/").json()["results"]]
    assert ids == [mine]
    assert member.get(f"/api/v1/instances/{theirs['instance']}/").status_code == 404
    assert member.post(f"/api/v1/instances/{theirs['instance']}/stop/").status_code == 404
    # Creating in a project the member does not belong to: unknown project.
    admins = Instance.objects.get(pk=theirs["instance"]).project_id
    resp = create(member, name="x", image=image.pk, flavor=tiny_flavor.pk, project=admins)
    assert resp.status_code == 400 and "project" in resp.json()["errors"]
    # Their only project goes without saying.
    resp = create(member, name="implied", image=image.pk, flavor=tiny_flavor.pk)
    assert resp.status_code == 202
    assert Instance.objects.get(pk=resp.json()["instance"]).project == other_project

    viewer = django_user_model.objects.create_user("vic", password="pw-vic-12345")
    Membership.objects.create(project=other_project, user=viewer, role="viewer")
    v = client_for(viewer)
    assert v.get(f"/api/v1/instances/{mine}/").status_code == 200
    Job.objects.update(status="succeeded")
    Instance.objects.update(current_job=None, state="running")
    assert v.post(f"/api/v1/instances/{mine}/stop/").status_code == 403
    assert v.delete(f"/api/v1/instances/{mine}/").status_code == 403


# Actions


@pytest.fixture
def running_instance(api_client, host, image, tiny_flavor):
    data = create(api_client, name="vm", image=image.pk, flavor=tiny_flavor.pk).json()
    Job.objects.filter(pk=data["id"]).update(status="succeeded")
    Instance.objects.filter(pk=data["instance"]).update(state="running", current_job=None)
    return Instance.objects.get(pk=data["instance"])


@pytest.mark.parametrize("action", ["stop", "shutdown", "reboot", "reset", "suspend"])
def test_actions_answer_202_then_409(api_client, running_instance, action):
    url = f"/api/v1/instances/{running_instance.pk}/{action}/"
    resp = api_client.post(url, {}, format="json")
    assert resp.status_code == 202, resp.content
    assert resp.json()["kind"] == f"instance.{action}"
    running_instance.refresh_from_db()
    assert running_instance.current_job_id == resp.json()["id"]
    resp = api_client.post(url, {}, format="json")
    assert resp.status_code == 409
    assert "busy" in resp.json()["detail"]


def test_action_invalid_in_state_is_409(api_client, running_instance):
    resp = api_client.post(f"/api/v1/instances/{running_instance.pk}/resume/")
    assert resp.status_code == 409
    resp = api_client.post(f"/api/v1/instances/{running_instance.pk}/start/")
    assert resp.status_code == 409
    assert Job.objects.filter(kind__in=["instance.resume", "instance.start"]).count() == 0


def test_shutdown_force_after_validated(api_client, running_instance):
    url = f"/api/v1/instances/{running_instance.pk}/shutdown/"
    assert api_client.post(url, {"force_after": "soon"}, format="json").status_code == 400
    assert api_client.post(url, {"force_after": 99999}, format="json").status_code == 400
    resp = api_client.post(url, {"force_after": 5}, format="json")
    assert resp.status_code == 202
    assert Job.objects.get(pk=resp.json()["id"]).params == {"force_after": 5}


def test_offline_host_fails_fast_without_job(api_client, running_instance):
    Host.objects.filter(pk=running_instance.host_id).update(
        status=Host.Status.OFFLINE, last_error="Connection refused"
    )
    before = Job.objects.count()
    resp = api_client.post(f"/api/v1/instances/{running_instance.pk}/stop/")
    assert resp.status_code == 503
    assert "offline" in resp.json()["detail"] and "Connection refused" in resp.json()["detail"]
    assert api_client.delete(f"/api/v1/instances/{running_instance.pk}/").status_code == 503
    assert Job.objects.count() == before


def test_resize_rules(api_client, running_instance, small_flavor):
    url = f"/api/v1/instances/{running_instance.pk}/resize/"
    assert api_client.post(url, {"flavor": small_flavor.pk}, format="json").status_code == 409
    Instance.objects.filter(pk=running_instance.pk).update(state="shutoff")
    assert api_client.post(url, {"flavor": 4242}, format="json").status_code == 400
    resp = api_client.post(url, {"flavor": running_instance.flavor_id}, format="json")
    assert resp.status_code == 400
    resp = api_client.post(url, {"flavor": small_flavor.pk}, format="json")
    assert resp.status_code == 202 and resp.json()["kind"] == "instance.resize"


def test_rename_and_only_rename(api_client, running_instance):
    url = f"/api/v1/instances/{running_instance.pk}/"
    resp = api_client.patch(url, {"name": "renamed"}, format="json")
    assert resp.status_code == 200 and resp.json()["name"] == "renamed"
    assert api_client.patch(url, {"name": "bad<name>"}, format="json").status_code == 400
    assert api_client.patch(url, {"state": "running"}, format="json").status_code == 400


def test_snapshot_endpoints(api_client, running_instance):
    from instances.models import Snapshot

    base = f"/api/v1/instances/{running_instance.pk}/snapshots/"
    assert api_client.get(base).json() == []
    assert api_client.post(base, {"name": "a b"}, format="json").status_code == 400
    resp = api_client.post(base, {"name": "s1", "description": "x"}, format="json")
    assert resp.status_code == 202 and resp.json()["kind"] == "instance.snapshot_create"
    Job.objects.update(status="succeeded")
    Instance.objects.update(current_job=None)
    snap = Snapshot.objects.create(instance=running_instance, name="s1", domain_state="running")
    assert [s["name"] for s in api_client.get(base).json()] == ["s1"]
    resp = api_client.post(f"{base}{snap.pk}/revert/")
    assert resp.status_code == 202 and resp.json()["kind"] == "instance.snapshot_revert"
    Job.objects.update(status="succeeded")
    resp = api_client.delete(f"{base}{snap.pk}/")
    assert resp.status_code == 202 and resp.json()["kind"] == "instance.snapshot_delete"
    assert api_client.post(f"{base}999/revert/").status_code == 404


# Unmanaged domains and adoption (test driver: it ships a domain named 'test')


def test_unmanaged_and_adopt_on_test_driver(api_client, host, member_user):
    resp = api_client.get(f"/api/v1/instances/unmanaged/?host={host.pk}")
    assert resp.status_code == 200, resp.content
    assert "test" in [d["name"] for d in resp.json()]
    assert (
        client_for(member_user).get(f"/api/v1/instances/unmanaged/?host={host.pk}").status_code
        == 403
    )
    assert api_client.get("/api/v1/instances/unmanaged/").status_code == 400

    resp = api_client.post(
        "/api/v1/instances/adopt/", {"host": host.pk, "domain": "nope"}, format="json"
    )
    assert resp.status_code == 400
    resp = api_client.post(
        "/api/v1/instances/adopt/", {"host": host.pk, "domain": "test"}, format="json"
    )
    assert resp.status_code == 201, resp.content
    instance = Instance.objects.get(pk=resp.json()["id"])
    assert instance.adopted and instance.domain_name == "test"
    assert instance.flavor.vcpus >= 1
    assert "test" not in [
        d["name"] for d in api_client.get(f"/api/v1/instances/unmanaged/?host={host.pk}").json()
    ]
    resp = api_client.post(
        "/api/v1/instances/adopt/", {"host": host.pk, "domain": "test"}, format="json"
    )
    assert resp.status_code == 409


def test_cancelling_a_pending_action_leaves_the_instance_as_it_was(api_client, running_instance):
    job_id = api_client.post(f"/api/v1/instances/{running_instance.pk}/stop/").json()["id"]
    resp = api_client.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert resp.json()["status"] == "cancelled"
    running_instance.refresh_from_db()
    assert running_instance.state == "running" and running_instance.current_job is None
    # Free for the next action at once.
    assert api_client.post(f"/api/v1/instances/{running_instance.pk}/stop/").status_code == 202


def test_cancelling_a_pending_create_leaves_an_instance_to_delete(
    api_client, host, image, tiny_flavor
):
    data = create(api_client, name="vm", image=image.pk, flavor=tiny_flavor.pk).json()
    assert api_client.post(f"/api/v1/jobs/{data['id']}/cancel/").json()["status"] == "cancelled"
    instance = Instance.objects.get(pk=data["instance"])
    assert instance.state == "error" and "cancel" in instance.state_reason.lower()
    assert instance.current_job is None
    assert api_client.delete(f"/api/v1/instances/{instance.pk}/").status_code == 202


def test_forget_is_the_way_out_when_the_host_is_gone(
    api_client, member_user, running_instance, default_project
):
    from cloudpanel.projects.models import Membership

    url = f"/api/v1/instances/{running_instance.pk}/forget/"
    assert api_client.post(url).status_code == 409  # host online: delete instead
    Host.objects.filter(pk=running_instance.host_id).update(
        status="offline", last_error="Connection refused"
    )
    assert api_client.delete(f"/api/v1/instances/{running_instance.pk}/").status_code == 503
    Membership.objects.create(project=default_project, user=member_user)
    assert client_for(member_user).post(url).status_code == 403  # admins only
    assert api_client.post(url).status_code == 204
    assert not Instance.objects.filter(pk=running_instance.pk).exists()


def test_forget_page_button_only_for_admins_on_unreachable_hosts(
    client, admin_user, running_instance
):
    client.force_login(admin_user)
    page = f"/instances/{running_instance.pk}/"
    assert "/forget/" not in client.get(page).content.decode()
    Host.objects.filter(pk=running_instance.host_id).update(status="offline")
    assert "/forget/" in client.get(page).content.decode()
    response = client.post(f"/instances/{running_instance.pk}/forget/")
    assert response.status_code == 302 and response.url == "/instances/"
    assert not Instance.objects.filter(pk=running_instance.pk).exists()
