"""The images API: upload with verification and inspection, visibility, update, delete."""

from __future__ import annotations

import hashlib

import pytest
from django.urls import reverse

from cloudpanel.jobs.models import Job
from images.models import Image
from instances.models import Flavor, Instance

from .conftest import store_files

pytestmark = pytest.mark.django_db

URL = "/api/v1/images/"


def upload(client, path, **fields):
    data = {"name": "img", "disk_format": "qcow2", **fields}
    with open(path, "rb") as fh:
        data["file"] = fh
        return client.post(URL, data, format="multipart")


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_image(project, **fields) -> Image:
    defaults = {
        "name": "base",
        "disk_format": "qcow2",
        "status": Image.Status.ACTIVE,
        "sha256": "a" * 64,
        "file_size": 1,
        "virtual_size": 1,
    }
    return Image.objects.create(project=project, **{**defaults, **fields})


# ------------------------------------------------------------------ upload


def test_good_qcow2_is_accepted_with_sizes_and_checksum(api_client, qcow2_file):
    response = upload(api_client, qcow2_file, name="cirros", os_type="linux", min_ram_mib=64)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "active"
    assert body["disk_format"] == "qcow2"
    assert body["virtual_size"] == 64 * 1024 * 1024
    assert body["file_size"] == qcow2_file.stat().st_size
    assert body["sha256"] == sha256_of(qcow2_file)
    assert body["visibility"] == "public"
    assert body["min_ram_mib"] == 64
    location = reverse("api:image-detail", args=[body["id"]])
    assert response["Location"] == "http://testserver" + location
    files = store_files()
    image = Image.objects.get(pk=body["id"])
    assert [p.name for p in files] == [image.file]
    assert image.file == f"image-{image.id}-{body['sha256'][:12]}.qcow2"
    assert files[0].read_bytes() == qcow2_file.read_bytes()


def test_raw_and_iso_are_accepted(api_client, raw_file, iso_file):
    raw = upload(api_client, raw_file, name="raw-disk", disk_format="raw")
    assert raw.status_code == 201, raw.content
    assert raw.json()["virtual_size"] == raw_file.stat().st_size
    iso = upload(api_client, iso_file, name="installer", disk_format="iso")
    assert iso.status_code == 201, iso.content
    assert Image.objects.get(pk=iso.json()["id"]).file.endswith(".iso")
    # The stored raw file has the same bytes (zero runs became holes, not different data).
    stored = Image.objects.get(pk=raw.json()["id"])
    assert (store_files()[0].parent / stored.file).read_bytes() == raw_file.read_bytes()


def test_matching_sha256_is_accepted_in_any_case(api_client, qcow2_file):
    response = upload(api_client, qcow2_file, sha256=sha256_of(qcow2_file).upper())
    assert response.status_code == 201, response.content


def test_sha256_mismatch_is_400_and_leaves_no_file(api_client, qcow2_file):
    response = upload(api_client, qcow2_file, sha256="0" * 64)
    assert response.status_code == 400
    assert "sha256" in response.json()["errors"]
    assert store_files() == []
    assert not Image.objects.exists()


def test_malformed_sha256_is_400(api_client, qcow2_file):
    response = upload(api_client, qcow2_file, sha256="not-a-checksum")
    assert response.status_code == 400
    assert "sha256" in response.json()["errors"]
    assert store_files() == []


def test_qcow2_with_backing_file_is_rejected(api_client, backing_qcow2):
    response = upload(api_client, backing_qcow2)
    assert response.status_code == 400
    assert "backing file" in response.json()["errors"]["file"][0]
    assert store_files() == []
    assert not Image.objects.exists()


def test_raw_declared_as_qcow2_is_rejected(api_client, raw_file):
    response = upload(api_client, raw_file, disk_format="qcow2")
    assert response.status_code == 400
    assert "declared qcow2 but it is raw" in response.json()["errors"]["file"][0]
    assert store_files() == []


def test_qcow2_declared_as_raw_is_rejected(api_client, qcow2_file):
    """Format confusion: a 'raw' disk that is really a qcow2 must never reach a host."""
    response = upload(api_client, qcow2_file, disk_format="raw")
    assert response.status_code == 400
    assert "declared raw but it is qcow2" in response.json()["errors"]["file"][0]
    assert store_files() == []


def test_raw_declared_as_iso_is_rejected(api_client, raw_file):
    response = upload(api_client, raw_file, disk_format="iso")
    assert response.status_code == 400
    assert "ISO 9660" in response.json()["errors"]["file"][0]
    assert store_files() == []


def test_file_size_limit(api_client, qcow2_file, settings):
    settings.IMAGE_MAX_FILE_SIZE = 64 * 1024
    response = upload(api_client, qcow2_file)
    assert response.status_code == 400
    assert "larger than the limit" in response.json()["errors"]["file"][0]
    assert store_files() == []


def test_virtual_size_limit(api_client, qcow2_file, settings):
    settings.IMAGE_MAX_VIRTUAL_SIZE = 32 * 1024 * 1024
    response = upload(api_client, qcow2_file)
    assert response.status_code == 400
    assert "virtual size" in response.json()["errors"]["file"][0]
    assert store_files() == []


def test_missing_fields_are_400_and_leave_no_file(api_client, qcow2_file):
    with open(qcow2_file, "rb") as fh:
        response = api_client.post(URL, {"file": fh}, format="multipart")
    assert response.status_code == 400
    assert {"name", "disk_format"} <= set(response.json()["errors"])
    assert store_files() == []


def test_bad_name_is_400(api_client, qcow2_file):
    response = upload(api_client, qcow2_file, name="no spaces allowed")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]
    assert store_files() == []


def test_file_and_url_together_is_400(api_client, qcow2_file):
    response = upload(api_client, qcow2_file, url="http://example.com/x.qcow2")
    assert response.status_code == 400
    assert store_files() == []


def test_anonymous_cannot_upload(anon_client, qcow2_file):
    response = upload(anon_client, qcow2_file)
    assert response.status_code in (401, 403)
    assert store_files() == []


# ------------------------------------------------------------------ visibility and permissions


def test_member_uploads_to_own_project(member_client, project_a, qcow2_file):
    response = upload(member_client, qcow2_file)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["visibility"] == "project"
    assert body["project"] == project_a.id


def test_member_cannot_create_public_images(member_client, qcow2_file):
    response = upload(member_client, qcow2_file, visibility="public")
    assert response.status_code == 403
    assert store_files() == []


def test_member_cannot_upload_to_another_project(member_client, project_b, qcow2_file):
    response = upload(member_client, qcow2_file, project=project_b.id)
    assert response.status_code == 400  # another project's id does not exist for them
    assert "project" in response.json()["errors"]
    assert store_files() == []


def test_viewer_cannot_upload(client, django_user_model, project_a, qcow2_file):
    from rest_framework.test import APIClient

    from cloudpanel.projects.models import Membership

    viewer = django_user_model.objects.create_user("vic", password="pw-vic-12345")
    Membership.objects.create(project=project_a, user=viewer, role="viewer")
    api = APIClient()
    api.force_authenticate(viewer)
    response = upload(api, qcow2_file, project=project_a.id)
    assert response.status_code == 403
    assert store_files() == []


def test_visibility_in_list_and_detail(member_client, outsider_client, project_a, project_b):
    public = make_image(project_b, name="public-one", visibility="public")
    mine = make_image(project_a, name="mine", visibility="project")
    theirs = make_image(project_b, name="theirs", visibility="project")

    names = {i["name"] for i in member_client.get(URL).json()["results"]}
    assert names == {"public-one", "mine"}
    assert member_client.get(f"{URL}{public.id}/").status_code == 200
    assert member_client.get(f"{URL}{mine.id}/").status_code == 200
    assert member_client.get(f"{URL}{theirs.id}/").status_code == 404
    assert outsider_client.get(f"{URL}{mine.id}/").status_code == 404
    assert outsider_client.patch(f"{URL}{mine.id}/", {"name": "x"}).status_code == 404
    assert outsider_client.delete(f"{URL}{mine.id}/").status_code == 404


def test_list_filters(api_client, default_project):
    make_image(default_project, name="a", disk_format="qcow2", status="active")
    make_image(default_project, name="b", disk_format="raw", status="error")
    make_image(default_project, name="c", disk_format="iso", visibility="project")

    def names(query):
        return sorted(i["name"] for i in api_client.get(URL + query).json()["results"])

    assert names("?status=active") == ["a", "c"]
    assert names("?disk_format=raw") == ["b"]
    assert names("?visibility=project") == ["c"]
    assert names("?disk_format=qcow2&disk_format=iso") == ["a", "c"]


# ------------------------------------------------------------------ guest metadata

GUEST_META = {
    "os_type": "linux",
    "cloud_init": True,
    "default_user": "debian",
    "firmware": "uefi",
    "disk_bus": "scsi",
}


def test_upload_stores_and_shows_the_guest_metadata(api_client, qcow2_file):
    response = upload(api_client, qcow2_file, name="debian-12", **GUEST_META)
    assert response.status_code == 201, response.content
    assert {k: response.json()[k] for k in GUEST_META} == GUEST_META
    image = Image.objects.get()
    assert {k: getattr(image, k) for k in GUEST_META} == GUEST_META
    detail = api_client.get(f"{URL}{image.id}/").json()
    assert {k: detail[k] for k in GUEST_META} == GUEST_META


def test_upload_without_guest_metadata_gets_the_defaults(api_client, qcow2_file):
    body = upload(api_client, qcow2_file).json()
    assert {k: body[k] for k in GUEST_META} == {
        "os_type": "linux",
        "cloud_init": False,
        "default_user": "",
        "firmware": "bios",
        "disk_bus": "virtio",
    }


def test_url_import_stores_the_guest_metadata(api_client):
    response = api_client.post(
        URL,
        {
            "name": "remote",
            "disk_format": "qcow2",
            "url": "http://127.0.0.1:9/x.qcow2",
            **GUEST_META,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    image = Image.objects.get(pk=response.json()["image"])
    assert {k: getattr(image, k) for k in GUEST_META} == GUEST_META


@pytest.mark.parametrize(
    "field, value",
    [
        ("os_type", "Ubuntu"),
        ("firmware", "efi"),
        ("disk_bus", "ide"),
        ("default_user", "Debian"),
        ("default_user", "1st"),
        ("default_user", "a b"),
        ("default_user", "x" * 33),
        ("cloud_init", "maybe"),
    ],
)
def test_bad_guest_metadata_is_a_400_naming_the_field(api_client, qcow2_file, field, value):
    response = upload(api_client, qcow2_file, **{field: value})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field], response.content
    assert not Image.objects.exists() and store_files() == []


def test_patch_guest_metadata(api_client, default_project):
    image = make_image(default_project)
    response = api_client.patch(f"{URL}{image.id}/", GUEST_META, format="json")
    assert response.status_code == 200, response.content
    image.refresh_from_db()
    assert {k: getattr(image, k) for k in GUEST_META} == GUEST_META
    refused = api_client.patch(f"{URL}{image.id}/", {"disk_bus": "floppy"}, format="json")
    assert refused.status_code == 400 and list(refused.json()["errors"]) == ["disk_bus"]
    image.refresh_from_db()
    assert image.disk_bus == "scsi"


# ------------------------------------------------------------------ update and delete


def test_patch_metadata(api_client, default_project):
    image = make_image(default_project)
    response = api_client.patch(
        f"{URL}{image.id}/", {"name": "renamed", "min_disk_gib": 10, "os_type": "windows"}
    )
    assert response.status_code == 200, response.content
    image.refresh_from_db()
    assert (image.name, image.min_disk_gib, image.os_type) == ("renamed", 10, "windows")


def test_patch_cannot_change_file_facts(api_client, default_project):
    image = make_image(default_project)
    response = api_client.patch(f"{URL}{image.id}/", {"sha256": "b" * 64, "status": "error"})
    assert response.status_code == 200  # read-only fields are ignored
    image.refresh_from_db()
    assert image.sha256 == "a" * 64 and image.status == "active"


def test_patch_bad_value_is_400(api_client, default_project):
    image = make_image(default_project)
    assert api_client.patch(f"{URL}{image.id}/", {"name": "bad name"}).status_code == 400
    assert api_client.patch(f"{URL}{image.id}/", {"min_ram_mib": -1}).status_code == 400


def test_member_may_edit_own_project_image_but_not_public(member_client, project_a):
    mine = make_image(project_a, visibility="project")
    public = make_image(project_a, name="pub", visibility="public")
    assert member_client.patch(f"{URL}{mine.id}/", {"min_ram_mib": 512}).status_code == 200
    assert member_client.patch(f"{URL}{mine.id}/", {"visibility": "public"}).status_code == 403
    assert member_client.patch(f"{URL}{public.id}/", {"min_ram_mib": 512}).status_code == 403
    assert member_client.delete(f"{URL}{public.id}/").status_code == 403


def test_put_is_not_offered(api_client, default_project):
    image = make_image(default_project)
    assert api_client.put(f"{URL}{image.id}/", {"name": "x"}).status_code == 405


def test_delete_removes_row_and_file(api_client, qcow2_file):
    image_id = upload(api_client, qcow2_file).json()["id"]
    assert len(store_files()) == 1
    response = api_client.delete(f"{URL}{image_id}/")
    assert response.status_code == 204
    assert not Image.objects.filter(pk=image_id).exists()
    assert store_files() == []


def test_delete_refused_while_an_instance_uses_it(api_client, qcow2_file, default_project):
    image_id = upload(api_client, qcow2_file).json()["id"]
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    Instance.objects.create(name="vm1", project=default_project, flavor=flavor, image_id=image_id)
    response = api_client.delete(f"{URL}{image_id}/")
    assert response.status_code == 409
    assert "used by 1 instance" in response.json()["detail"]
    assert Image.objects.filter(pk=image_id).exists()
    assert len(store_files()) == 1


def test_delete_refused_while_a_job_runs(api_client, default_project):
    image = make_image(default_project)
    Job.objects.create(kind="image.import", target_type="image", target_id=image.id)
    assert api_client.delete(f"{URL}{image.id}/").status_code == 409


# ------------------------------------------------------------------ replicas and mirror (API side)


def test_replicas_admin_only(api_client, member_client, project_a):
    image = make_image(project_a, visibility="project")
    assert api_client.get(f"{URL}{image.id}/replicas/").json() == []
    assert member_client.get(f"{URL}{image.id}/replicas/").status_code == 403


def test_mirror_validation(api_client, member_client, test_host, project_a):
    image = make_image(project_a, visibility="project")
    mirror = f"{URL}{image.id}/mirror/"
    assert api_client.post(mirror, {"host": 99999}, format="json").status_code == 400
    assert member_client.post(mirror, {"host": test_host.id}, format="json").status_code == 403
    queued = make_image(project_a, name="q", status="queued")
    response = api_client.post(f"{URL}{queued.id}/mirror/", {"host": test_host.id}, format="json")
    assert response.status_code == 409


def test_mirror_answers_202_with_job(api_client, test_host, default_project):
    image = make_image(default_project)
    response = api_client.post(
        f"{URL}{image.id}/mirror/", {"host": test_host.id, "pool": "default-pool"}, format="json"
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["kind"] == "image.mirror" and body["status"] == "pending"
    assert body["image"] == image.id
    assert body["target"] == {"type": "image", "id": image.id, "name": image.name}
    location = reverse("api:job-detail", args=[body["id"]])
    assert response["Location"] == "http://testserver" + location
    # The same copy again while the first is pending: 409 with the running job.
    again = api_client.post(
        f"{URL}{image.id}/mirror/", {"host": test_host.id, "pool": "default-pool"}, format="json"
    )
    assert again.status_code == 409
    assert again.json()["job"]["id"] == body["id"]


def test_mirror_without_a_pool_goes_to_the_hosts_default_pool(api_client, test_host, project_a):
    test_host.default_pool = "default-pool"  # the test driver's only pool
    test_host.save()
    image = make_image(project_a)
    response = api_client.post(f"{URL}{image.id}/mirror/", {"host": test_host.id}, format="json")
    assert response.status_code == 202, response.content
    assert Job.objects.get(pk=response.json()["id"]).params["pool"] == "default-pool"


def test_schema_documents_images(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/images/" in paths and "/api/v1/images/{id}/mirror/" in paths
