"""Regressions found by trying the running product from outside: as a tenant probing for
infrastructure details, and as an integrator fuzzing the API from its schema.

Each test names what was sent and what came back before the fix.
"""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from cloudpanel.projects.models import Membership
from hosts.models import Host
from images.models import Image
from instances.models import Flavor, Instance

pytestmark = pytest.mark.django_db

HOST_NAME = "hv-hidden-31"
GIB = 1024**3


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def tenant(member_user, default_project):
    Membership.objects.create(project=default_project, user=member_user)
    return member_user


@pytest.fixture
def full_host(db):
    """An online host with no storage pool: the scheduler can place nothing on it."""
    return Host.objects.create(
        name=HOST_NAME, uri="qemu+tcp://127.0.0.31:16509/system", status="online"
    )


@pytest.fixture
def image(default_project):
    return Image.objects.create(
        name="img", disk_format="qcow2", project=default_project, status=Image.Status.ACTIVE
    )


@pytest.fixture
def flavors(db):
    return (
        Flavor.objects.create(name="f1", vcpus=1, ram_mib=64, disk_gib=1),
        Flavor.objects.create(name="f2", vcpus=2, ram_mib=128, disk_gib=2),
    )


# Before: {"flavor": ["No host has room for flavor f1: host hv-hidden-31 has no active storage
# pool 'default'."]} for a tenant, naming every host and why it is full.
def test_no_room_on_create_names_no_host_for_tenant(tenant, full_host, image, flavors):
    resp = client_for(tenant).post(
        "/api/v1/instances/", {"name": "a", "image": image.pk, "flavor": flavors[0].pk}
    )
    assert resp.status_code == 400
    assert b"No host has room for flavor f1" in resp.content
    assert HOST_NAME.encode() not in resp.content
    assert b"pool" not in resp.content


def test_no_room_on_create_names_the_host_for_admin(api_client, full_host, image, flavors):
    resp = api_client.post(
        "/api/v1/instances/", {"name": "a", "image": image.pk, "flavor": flavors[0].pk}
    )
    assert resp.status_code == 400
    assert HOST_NAME.encode() in resp.content


def test_no_room_on_resize_names_no_host_for_tenant(tenant, default_project, image, flavors):
    host = Host.objects.create(
        name=HOST_NAME,
        uri="qemu+tcp://127.0.0.31:16509/system",
        status="online",
        storage_pools=[{"name": "default", "active": True, "capacity_bytes": GIB}],
        capabilities={"cpus": 1, "memory_bytes": 64 * 1024 * 1024},
    )
    instance = Instance.objects.create(
        name="a",
        project=default_project,
        owner=tenant,
        flavor=flavors[0],
        image=image,
        host=host,
        state=Instance.State.SHUTOFF,
    )
    resp = client_for(tenant).post(
        f"/api/v1/instances/{instance.pk}/resize/", {"flavor": flavors[1].pk}
    )
    assert resp.status_code == 400, resp.content
    assert HOST_NAME.encode() not in resp.content


# Before: GET /api/v1/instances/?project=99999999999999999999999 (also flavor, image, host
# for admins, and /api/v1/jobs/?project=) answered 500: the id reached SQLite as an
# OverflowError. Ids are whole numbers in the database's range, else 400.
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/instances/?project={v}",
        "/api/v1/instances/?flavor={v}",
        "/api/v1/instances/?image={v}",
        "/api/v1/instances/?host={v}",
        "/api/v1/jobs/?project={v}",
        "/api/v1/images/?project={v}",
    ],
)
@pytest.mark.parametrize("value", ["99999999999999999999999", "-99999999999999999999999", "1.5"])
def test_id_filters_out_of_range_are_400(api_client, path, value):
    resp = api_client.get(path.format(v=value))
    assert resp.status_code == 400, resp.content
    assert resp["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/instances/?project={v}", "/jobs/?project={v}"])
def test_id_filters_out_of_range_on_pages_are_not_500(admin_user, path):
    client = Client()
    client.force_login(admin_user)
    resp = client.get(path.format(v="99999999999999999999999"))
    assert resp.status_code < 500


def test_id_filter_in_range_still_matches(api_client, default_project):
    resp = api_client.get(f"/api/v1/instances/?project={default_project.pk}")
    assert resp.status_code == 200
    assert api_client.get("/api/v1/instances/?project=9223372036854775807").json()["results"] == []


# Before: GET /api/v1/projects/?limit=482157224542564781843967639552&offset=-38423411812662467
# 8519758651392 (schemathesis, as a tenant) answered 500: the limit reached SQLite as an
# OverflowError. Any list with a huge limit or offset did the same.
@pytest.mark.parametrize("path", ["/api/v1/projects/", "/api/v1/instances/", "/api/v1/jobs/"])
@pytest.mark.parametrize(
    "query",
    [
        "limit=482157224542564781843967639552&offset=-384234118126624678519758651392",
        "offset=482157224542564781843967639552",
        "limit=5&offset=9223372036854775807",
    ],
)
def test_huge_limit_and_offset_are_not_500(tenant, path, query):
    resp = client_for(tenant).get(f"{path}?{query}")
    # A negative offset is refused; the cursor-paged lists (instances, jobs) take no offset.
    if "offset=-" in query or path != "/api/v1/projects/":
        assert resp.status_code == 400, resp.content
        assert "offset" in resp.json()["errors"]
        return
    assert resp.status_code == 200, resp.content
    assert "results" in resp.json()


def test_limit_is_capped_and_still_pages(tenant, default_project):
    resp = client_for(tenant).get("/api/v1/projects/?limit=99999999999999999999999")
    assert resp.status_code == 200
    assert [p["id"] for p in resp.json()["results"]] == [default_project.pk]


# Before: PATCH /api/v1/instances/{id}/ with the JSON body `null` answered 500
# (TypeError: 'NoneType' object is not iterable).
@pytest.mark.parametrize("body", ["null", "[]", '["name"]', '"name"', "1"])
def test_instance_patch_with_a_non_object_body_is_400(
    tenant, default_project, image, flavors, body
):
    instance = Instance.objects.create(
        name="a", project=default_project, owner=tenant, flavor=flavors[0], image=image
    )
    resp = client_for(tenant).patch(
        f"/api/v1/instances/{instance.pk}/", body, content_type="application/json"
    )
    assert resp.status_code == 400, resp.content
    instance.refresh_from_db()
    assert instance.name == "a"


# Before: DELETE /api/v1/projects/{id}/ of a project with an instance or an image answered
# 500 (ProtectedError), found by schemathesis as an admin.
def test_deleting_a_project_in_use_is_409(api_client, default_project, image):
    resp = api_client.delete(f"/api/v1/projects/{default_project.pk}/")
    assert resp.status_code == 409, resp.content
    assert "still has instances, images or backups" in resp.json()["detail"]
    assert api_client.get(f"/api/v1/projects/{default_project.pk}/").status_code == 200


def test_deleting_an_empty_project_still_works(api_client):
    pk = api_client.post("/api/v1/projects/", {"name": "empty"}).json()["id"]
    assert api_client.delete(f"/api/v1/projects/{pk}/").status_code == 204
