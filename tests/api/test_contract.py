"""The API contract's list and read rules, one by one (the schemathesis run checks the
schema's side of them)."""

import pytest
from rest_framework.test import APIClient

from cloudpanel.accounts.tokens import issue_token
from cloudpanel.jobs.models import Job
from instances.models import Flavor

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(admin_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(admin_user, name='c').secret}")
    return client


@pytest.fixture
def jobs(admin_user):
    return [
        Job.objects.create(kind=f"test.k{i % 3}", target_type="host", target_id=i,
                           target_name=f"t{i}", requested_by=admin_user)
        for i in range(7)
    ]  # fmt: skip


def assert_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"detail", "code", "errors"} and body["detail"], body
    if field:
        assert field in body["errors"], body
    return body


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/flavors/?limit=abc", "limit"),
        ("/api/v1/flavors/?limit=0", "limit"),
        ("/api/v1/flavors/?offset=-5", "offset"),
        ("/api/v1/flavors/?offset=x", "offset"),
        ("/api/v1/jobs/?limit=abc", "limit"),
        ("/api/v1/jobs/?cursor=bogus", "cursor"),
        ("/api/v1/jobs/?cursor=cD1hYmM%3D", "cursor"),  # p=abc: not a date
        ("/api/v1/jobs/?ordering=nonsense", "ordering"),
        ("/api/v1/jobs/?project=abc", "project"),
        ("/api/v1/jobs/?status=bogus", "status"),
        ("/api/v1/jobs/?stauts=failed", "stauts"),  # unknown: refused, not ignored
        ("/api/v1/jobs/?offset=5", "offset"),  # the cursor lists take no offset
        ("/api/v1/instances/?frobnicate=1", "frobnicate"),
        ("/api/v1/hosts/?ordering=uri", "ordering"),
    ],
)
def test_invalid_query_values_are_a_400_with_the_error_body(admin, jobs, url, field):
    body = assert_error(admin.get(url), 400, field)
    assert body["code"] == "invalid"


def test_an_unknown_parameter_names_the_ones_the_list_takes(admin):
    body = assert_error(admin.get("/api/v1/flavors/?vpcus=2"), 400, "vpcus")
    assert "vcpus" in body["errors"]["vpcus"][0] and "ordering" in body["errors"]["vpcus"][0]


def test_cursor_pages_walk_the_whole_list_once_in_the_default_order(admin, jobs):
    seen, url = [], "/api/v1/jobs/?limit=3"
    while url:
        page = admin.get(url).json()
        assert set(page) == {"next", "previous", "results"}
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
        assert url is None or url.startswith("http://testserver/api/v1/jobs/")
    assert seen == [job.id for job in reversed(jobs)]  # default: newest first


def test_ordering_works_and_ties_break_by_id(admin, jobs):
    rows = admin.get("/api/v1/jobs/?ordering=kind").json()["results"]
    assert [(r["kind"], r["id"]) for r in rows] == sorted((j.kind, j.id) for j in jobs)
    Flavor.objects.create(name="b", vcpus=2, ram_mib=64, disk_gib=1)
    Flavor.objects.create(name="a", vcpus=1, ram_mib=64, disk_gib=1)
    names = [f["name"] for f in admin.get("/api/v1/flavors/?ordering=-name").json()["results"]]
    assert names == ["b", "a"]


def test_reads_carry_an_etag_and_if_none_match_answers_304(admin, jobs):
    first = admin.get(f"/api/v1/jobs/{jobs[0].id}/")
    etag = first["ETag"]
    assert etag.startswith('W/"')
    again = admin.get(f"/api/v1/jobs/{jobs[0].id}/", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag and not again.content
    Job.objects.filter(pk=jobs[0].pk).update(progress=50)
    changed = admin.get(f"/api/v1/jobs/{jobs[0].id}/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag


def test_errors_have_the_one_body(admin, anon_client):
    assert assert_error(admin.get("/api/v1/jobs/999999/"), 404)["code"] == "not_found"
    assert assert_error(admin.put("/api/v1/jobs/"), 405)["code"] == "method_not_allowed"
    body = assert_error(anon_client.get("/api/v1/jobs/"), 401)
    assert body["code"] == "not_authenticated"
    refused = admin.post("/api/v1/flavors/", "x", content_type="text/plain")
    assert assert_error(refused, 415)["code"] == "unsupported_media_type"
    assert assert_error(admin.post("/api/v1/flavors/", {}, format="json"), 400, "name")
