"""Tenants see what they own: no host names, URIs, pools, volume paths or libvirt domain names
in the API, the pages or job text; host ids from tenants cannot be probed.

Assertions are on the raw response bytes, so a leak anywhere in a page or a JSON body fails.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import job_handler
from cloudpanel.jobs.services import JobFailed, job_create, job_execute
from cloudpanel.projects import access
from cloudpanel.projects.models import Membership, Project
from hosts.models import Host
from instances.models import Flavor, Instance, Volume

HOST_NAME = "hv-secret-07"
HOST_URI = "qemu+tcp://127.0.0.7:16509/system"
POOL = "pool-zeta9"
PATH = f"/srv/{POOL}/disk-of-a.qcow2"
WORKER = "worker-node-42:4242"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@job_handler("test.visibility")
def _visibility_job(job, ctx):
    ctx.progress(10, f"Copying the image to {HOST_NAME}/{POOL}", public="Copying the image")
    ctx.log(f"volume at {PATH}")  # admin-only: the default
    ctx.log("disk ready", public=True)
    if job.params.get("fail") == "raw":
        raise RuntimeError(f"cannot open {PATH} on {HOST_URI}")
    if job.params.get("fail") == "public":
        raise JobFailed("The guest did not shut down within 60 s", public=True)
    return {"state": "running", "domain": "cp-secret", "path": PATH}


@pytest.fixture
def world(db, member_user, admin_user):
    project_a = Project.objects.create(name="proj-a")
    project_b = Project.objects.create(name="proj-b")
    Membership.objects.create(project=project_a, user=member_user)
    host = Host.objects.create(name=HOST_NAME, uri=HOST_URI, status="online")
    other_host = Host.objects.create(
        name="hv-secret-08", uri="qemu+tcp://127.0.0.8:16509/system", status="online"
    )
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    instance = Instance.objects.create(
        name="web-1",
        project=project_a,
        owner=member_user,
        flavor=flavor,
        host=host,
        state=Instance.State.ERROR,
        state_reason=f"Provisioning failed: cannot open {PATH} on {HOST_NAME}",
    )
    instance.domain_name = f"cp-{instance.uuid}"
    instance.save()
    Volume.objects.create(
        host=host, instance=instance, pool=POOL, name="cp-x-disk0.qcow2", path=PATH, role="root"
    )
    job = job_create(
        kind="test.visibility",
        target_type="instance",
        target_id=instance.id,
        target_name=instance.name,
        project=project_a,
        user=member_user,
        params={"fail": "raw"},
        enqueue=False,
    )
    job_execute(job.id)
    job.refresh_from_db()
    Job.objects.filter(pk=job.pk).update(worker=WORKER)
    job.refresh_from_db()
    Instance.objects.filter(pk=instance.pk).update(current_job=job)
    return {
        "a": project_a,
        "b": project_b,
        "host": host,
        "other_host": other_host,
        "instance": instance,
        "job": job,
        "flavor": flavor,
    }


def _secrets(world) -> list[bytes]:
    return [
        s.encode()
        for s in (
            HOST_NAME,
            HOST_URI,
            "127.0.0.7",
            POOL,
            PATH,
            WORKER,
            world["instance"].domain_name,
            '"host":',
            '"host_name"',
            '"volumes"',
        )
    ]


def _assert_clean(body: bytes, world, where: str) -> None:
    for secret in _secrets(world):
        assert secret not in body, f"{secret!r} leaked in {where}"


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_job_text_is_admin_only_by_default(world):
    job = world["job"]
    assert job.status == Job.Status.FAILED
    assert PATH in job.log and HOST_NAME in job.log and PATH in job.error
    assert job.public_step == "Copying the image"
    assert "disk ready" in job.public_log and PATH not in job.public_log
    assert HOST_NAME not in job.public_log and "cannot open" not in job.public_log
    assert job.public_error == access.GENERIC_JOB_FAILURE


def test_public_failure_message_reaches_tenants(world, member_user):
    job = job_create(
        kind="test.visibility",
        target_type="instance",
        target_id=999,
        project=world["a"],
        params={"fail": "public"},
        enqueue=False,
    )
    job_execute(job.id)
    body = _api(member_user).get(f"/api/v1/jobs/{job.id}/").json()
    assert body["error"] == "The guest did not shut down within 60 s"


def test_tenant_api_shows_no_infrastructure(world, member_user):
    client = _api(member_user)
    instance, job = world["instance"], world["job"]
    urls = [
        "/api/v1/instances/",
        f"/api/v1/instances/{instance.id}/",
        "/api/v1/jobs/",
        f"/api/v1/jobs/{job.id}/",
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        _assert_clean(response.content, world, url)
    detail = client.get(f"/api/v1/instances/{instance.id}/").json()
    assert detail["host_key"] == access.host_key(world["host"].id, world["a"].id)
    assert detail["state_reason"] == access.GENERIC_INSTANCE_REASON["error"]
    assert detail["job"]["step"] == "Copying the image"
    job_body = client.get(f"/api/v1/jobs/{job.id}/").json()
    assert job_body["error"] == access.GENERIC_JOB_FAILURE
    assert job_body["result"] == {}
    assert "disk ready" in job_body["log"]


def test_admin_api_still_shows_infrastructure(world, admin_user):
    client = _api(admin_user)
    instance, job = world["instance"], world["job"]
    detail = client.get(f"/api/v1/instances/{instance.id}/").json()
    assert detail["host"] == world["host"].id and detail["host_name"] == HOST_NAME
    assert detail["volumes"][0]["path"] == PATH
    assert detail["domain_name"] == instance.domain_name
    assert PATH in detail["state_reason"]
    job_body = client.get(f"/api/v1/jobs/{job.id}/").json()
    assert PATH in job_body["log"] and PATH in job_body["error"]
    assert HOST_NAME in job_body["step"]


def test_tenant_pages_show_no_infrastructure(world, member_user):
    client = _page(member_user)
    instance, job = world["instance"], world["job"]
    for url in ["/", "/instances/", f"/instances/{instance.id}/", "/jobs/", f"/jobs/{job.id}/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        _assert_clean(response.content, world, url)
    page = client.get(f"/jobs/{job.id}/").content.decode()
    assert "disk ready" in page and access.GENERIC_JOB_FAILURE in page


def test_admin_pages_show_infrastructure(world, admin_user):
    client = _page(admin_user)
    instance, job = world["instance"], world["job"]
    detail = client.get(f"/instances/{instance.id}/").content.decode()
    assert HOST_NAME in detail and POOL in detail and instance.domain_name in detail
    job_page = client.get(f"/jobs/{job.id}/").content.decode()
    assert PATH in job_page and WORKER in job_page
    assert HOST_NAME in client.get("/instances/").content.decode()


def test_host_key_tells_same_host_apart_only_within_a_project(world):
    a, b = world["a"].id, world["b"].id
    host, other = world["host"].id, world["other_host"].id
    assert access.host_key(host, a) == access.host_key(host, a)
    assert access.host_key(host, a) != access.host_key(other, a)
    assert access.host_key(host, a) != access.host_key(host, b)  # no cross-project mapping
    assert len(access.host_key(host, a)) == 28 and int(access.host_key(host, a), 16) >= 0
    assert access.host_key(None, a) == ""


def _create(client, host_id):
    body = {"name": "probe", "image": 1, "flavor": 1, "host": host_id}
    return client.post("/api/v1/instances/", body, format="json")


def test_unknown_and_real_host_ids_get_identical_answers(world, member_user):
    client = _api(member_user)
    real, unknown = world["host"].id, 987654
    assert not Host.objects.filter(pk=unknown).exists()

    answers = [_create(client, real), _create(client, unknown)]
    assert answers[0].status_code == 403
    assert answers[0].content == answers[1].content
    assert json.loads(answers[0].content)["detail"] == access.HOST_CHOICE_REFUSED

    listed = [client.get(f"/api/v1/instances/?host={h}") for h in (real, unknown)]
    assert listed[0].status_code == listed[1].status_code == 403
    assert listed[0].content == listed[1].content

    jobs = [client.get(f"/api/v1/jobs/?target_type=host&target_id={h}") for h in (real, unknown)]
    assert jobs[0].status_code == 200 and jobs[0].content == jobs[1].content


def test_unknown_and_foreign_project_filters_look_alike(world, member_user):
    client = _api(member_user)
    answers = [client.get(f"/api/v1/jobs/?project={p}") for p in (world["b"].id, 987654)]
    assert answers[0].status_code == 200 and answers[0].content == answers[1].content
    answers = [client.get(f"/api/v1/instances/?project={p}") for p in (world["b"].id, 987654)]
    assert answers[0].status_code == 200 and answers[0].content == answers[1].content
    answers = [client.get(f"/api/v1/images/?project={p}") for p in (world["b"].id, 987654)]
    assert answers[0].status_code == 200 and answers[0].content == answers[1].content


def test_admin_may_still_pin_and_filter_by_host(world, admin_user):
    client = _api(admin_user)
    listed = client.get(f"/api/v1/instances/?host={world['host'].id}").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [row["id"] for row in rows] == [world["instance"].id]
    # An admin's unknown host is named as such (admins may know which hosts exist).
    assert _create(client, 987654).status_code == 400


def test_mirror_refuses_tenants_before_the_host_lookup(world, member_user, settings):
    from images.models import Image

    image = Image.objects.create(
        name="img-a", disk_format="raw", status=Image.Status.ACTIVE, project=world["a"]
    )
    client = _api(member_user)
    answers = [
        client.post(f"/api/v1/images/{image.id}/mirror/", {"host": h}, format="json")
        for h in (world["host"].id, 987654)
    ]
    assert answers[0].status_code == 403
    assert answers[0].content == answers[1].content
