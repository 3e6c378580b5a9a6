"""The image pages: list with upload (progress bar) and import forms, detail with copies."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from cloudpanel.jobs.models import Job
from images.models import Image, ImageReplica

from .conftest import store_files
from .test_api import make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


@pytest.fixture
def member_browser(member_client, member_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member_user)
    return client


def csrf_token(client) -> str:
    page = client.get(reverse("images:list")).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def browser_upload(client, path, xhr=True, token=None, **fields):
    data = {"name": "from-browser", "disk_format": "qcow2", "visibility": "public", **fields}
    if token is not False:
        data["csrfmiddlewaretoken"] = token or csrf_token(client)
    headers = {"X-Requested-With": "XMLHttpRequest", "Accept": "application/json"} if xhr else {}
    with open(path, "rb") as fh:
        data["file"] = fh
        return client.post(reverse("images:upload"), data, headers=headers)


def test_list_page_has_upload_form_with_progress_bar(admin_browser, default_project):
    make_image(default_project, name="ubuntu-24.04")
    response = admin_browser.get(reverse("images:list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "ubuntu-24.04" in html
    assert 'enctype="multipart/form-data"' in html and "data-image-upload" in html
    assert "data-upload-bar" in html and 'role="progressbar"' in html
    assert "/static/js/images.js" in html
    assert 'action="/images/import/"' in html


def test_list_shows_only_visible_images(member_browser, project_a, project_b):
    make_image(project_a, name="ours", visibility="project")
    make_image(project_b, name="theirs", visibility="project")
    make_image(project_b, name="for-all", visibility="public")
    html = member_browser.get(reverse("images:list")).content.decode()
    assert "ours" in html and "for-all" in html and "theirs" not in html
    # Members are not offered public visibility when uploading.
    select = re.search(
        r'<select name="visibility"[^>]*id="upload_visibility".*?</select>', html, re.S
    )
    assert select and 'value="project"' in select.group(0)
    assert 'value="public"' not in select.group(0)


def test_list_filters(admin_browser, default_project):
    make_image(default_project, name="good-one", status="active")
    make_image(default_project, name="broken-one", status="error", error="boom")
    html = admin_browser.get(reverse("images:list") + "?status=error").content.decode()
    assert "broken-one" in html and "good-one" not in html


def test_static_script_is_served(admin_browser):
    response = admin_browser.get("/static/js/images.js")
    assert response.status_code == 200
    body = b"".join(response).decode()  # sync or async file iterator alike
    assert "upload.onprogress" in body and "XMLHttpRequest" in body


def test_xhr_upload_with_csrf(admin_browser, qcow2_file):
    response = browser_upload(admin_browser, qcow2_file)
    assert response.status_code == 201, response.content
    body = response.json()
    image = Image.objects.get(pk=body["id"])
    assert body["url"] == reverse("images:detail", args=[image.id])
    assert image.status == "active" and image.visibility == "public"
    assert [p.name for p in store_files()] == [image.file]


def test_form_upload_without_javascript_redirects(admin_browser, qcow2_file):
    response = browser_upload(admin_browser, qcow2_file, xhr=False)
    assert response.status_code == 302
    image = Image.objects.get()
    assert response["Location"] == reverse("images:detail", args=[image.id])


def test_upload_without_csrf_token_is_refused_and_leaves_nothing(admin_browser, qcow2_file):
    csrf_token(admin_browser)  # sets the cookie; the form token is missing
    response = browser_upload(admin_browser, qcow2_file, token=False)
    assert response.status_code == 403
    assert not Image.objects.exists()
    assert store_files() == []


def test_rejected_upload_shows_errors(admin_browser, backing_qcow2):
    response = browser_upload(admin_browser, backing_qcow2)
    assert response.status_code == 400
    assert "backing file" in response.json()["errors"]["file"][0]["message"]
    assert store_files() == []
    page = browser_upload(admin_browser, backing_qcow2, xhr=False)
    assert page.status_code == 400
    assert "backing file" in page.content.decode()


def test_member_upload_to_own_project(member_browser, project_a, qcow2_file):
    response = browser_upload(member_browser, qcow2_file, visibility="project")
    assert response.status_code == 201, response.content
    assert Image.objects.get().project == project_a
    refused = browser_upload(member_browser, qcow2_file, visibility="public")
    assert refused.status_code == 400
    assert len(store_files()) == 1


def test_anonymous_is_sent_to_login(qcow2_file):
    response = Client().post(reverse("images:upload"), {"name": "x"})
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_import_form_starts_a_job(admin_browser):
    response = admin_browser.post(
        reverse("images:import"),
        {
            "csrfmiddlewaretoken": csrf_token(admin_browser),
            "url": "http://127.0.0.1:9/cloud.qcow2",
            "name": "from-url",
            "disk_format": "qcow2",
            "visibility": "public",
        },
    )
    image = Image.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("images:detail", args=[image.id])
    job = Job.objects.get()
    assert job.kind == "image.import" and job.target_id == image.id


def test_detail_page_for_admin_has_copies_and_mirror_form(
    admin_browser, default_project, test_host
):
    image = make_image(default_project, name="debian")
    ImageReplica.objects.create(
        image=image, host=test_host, pool="default-pool", volume="image-1-x.qcow2",
        status="active", path="/default-pool/image-1-x.qcow2",
    )  # fmt: skip
    html = admin_browser.get(reverse("images:detail", args=[image.id])).content.decode()
    assert "debian" in html and "Copies on hosts" in html
    assert "image-1-x.qcow2" in html and test_host.name in html
    assert reverse("images:mirror", args=[image.id]) in html


def test_detail_page_for_member(member_browser, project_a, project_b):
    ours = make_image(project_a, name="ours", visibility="project")
    theirs = make_image(project_b, name="theirs", visibility="project")
    html = member_browser.get(reverse("images:detail", args=[ours.id])).content.decode()
    assert "ours" in html
    assert "Copies on hosts" not in html and "Copy to a host" not in html
    assert member_browser.get(reverse("images:detail", args=[theirs.id])).status_code == 404


def test_mirror_form_starts_a_job(admin_browser, default_project, test_host):
    image = make_image(default_project)
    response = admin_browser.post(
        reverse("images:mirror", args=[image.id]),
        {"csrfmiddlewaretoken": csrf_token(admin_browser), "host": test_host.id, "pool": "x"},
    )
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.kind == "image.mirror" and job.params["pool"] == "x"


def test_mirror_form_with_no_pool_uses_the_hosts_default_pool(
    admin_browser, default_project, test_host
):
    test_host.default_pool = "default-pool"
    test_host.save()
    image = make_image(default_project)
    response = admin_browser.post(
        reverse("images:mirror", args=[image.id]),
        {"csrfmiddlewaretoken": csrf_token(admin_browser), "host": test_host.id, "pool": ""},
    )
    assert response.status_code == 302
    assert Job.objects.get().params["pool"] == "default-pool"


def test_refusals_on_the_detail_page_are_messages(admin_browser, default_project, test_host):
    queued = make_image(default_project, name="q", status="queued")
    token = csrf_token(admin_browser)
    response = admin_browser.post(
        reverse("images:mirror", args=[queued.id]),
        {"csrfmiddlewaretoken": token, "host": test_host.id},
        follow=True,
    )
    assert response.status_code == 200 and "not active; it cannot be copied" in response.text
    Job.objects.create(kind="image.import", target_type="image", target_id=queued.id)
    response = admin_browser.post(
        reverse("images:delete", args=[queued.id]), {"csrfmiddlewaretoken": token}, follow=True
    )
    assert response.status_code == 200 and "has a job running" in response.text
    assert Image.objects.filter(pk=queued.pk).exists()


def test_delete_from_the_page(admin_browser, qcow2_file):
    browser_upload(admin_browser, qcow2_file)
    image = Image.objects.get()
    response = admin_browser.post(
        reverse("images:delete", args=[image.id]),
        {"csrfmiddlewaretoken": csrf_token(admin_browser)},
    )
    assert response.status_code == 302 and response["Location"] == reverse("images:list")
    assert not Image.objects.exists() and store_files() == []


def test_upload_form_takes_the_guest_metadata(admin_browser, qcow2_file):
    page = admin_browser.get(reverse("images:list")).content.decode()
    for field in ("os_type", "cloud_init", "default_user", "firmware", "disk_bus"):
        assert f'name="{field}"' in page
    response = browser_upload(
        admin_browser,
        qcow2_file,
        os_type="linux",
        cloud_init="on",
        default_user="debian",
        firmware="uefi",
        disk_bus="sata",
    )
    assert response.status_code == 201, response.content
    image = Image.objects.get()
    assert (image.cloud_init, image.default_user, image.firmware, image.disk_bus) == (
        True,
        "debian",
        "uefi",
        "sata",
    )
    detail = admin_browser.get(reverse("images:detail", args=[image.id])).content.decode()
    assert "UEFI" in detail and "SATA" in detail and "debian" in detail
    refused = browser_upload(admin_browser, qcow2_file, default_user="Not A User")
    assert refused.status_code == 400
    assert "default_user" in refused.json()["errors"]
