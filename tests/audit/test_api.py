"""Reading the audit: read-only, scoped to the reader's projects, filterable, exportable."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client

from cloudpanel.audit.models import AuditEvent
from cloudpanel.audit.services import audit_record

from .conftest import client_for, events, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(blue, red, admin, blue_member, red_member, flavor, host):
    """Events in both projects and of no project, one by an admin naming a host."""
    web = make_instance(blue, flavor, host, name="web")
    db = make_instance(red, flavor, host, name="db", domain="cp-r")
    AuditEvent.objects.all().delete()  # the fixtures' own (host.create)
    audit_record(action="instance.start", user=blue_member, target=web, params={"name": "web"})
    audit_record(action="instance.stop", user=red_member, target=db)
    audit_record(
        action="instance.migrate", user=admin, target=web, result="failed",
        params={"host": host.pk, "name": "web"}, message=f"Host {host.name} refused it",
    )  # fmt: skip
    audit_record(action="host.update", user=admin, target=host, params={"uri": host.uri})
    audit_record(action="auth.login", user=blue_member, target=blue_member)
    return {"web": web, "db": db}


def listed(client, query=""):
    response = client.get(f"/api/v1/audit/{query}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_admins_see_everything_newest_first(trail, admin):
    rows = listed(client_for(admin))
    assert [r["action"] for r in rows] == [
        "auth.login", "host.update", "instance.migrate", "instance.stop", "instance.start"
    ]  # fmt: skip
    migrate = rows[2]
    assert migrate["params"]["host"] and "refused" in migrate["message"]


def test_tenants_see_their_projects_without_infrastructure(trail, blue_member, blue_viewer, host):
    for user in (blue_member, blue_viewer):
        rows = listed(client_for(user))
        assert {r["project_id"] for r in rows} <= {trail["web"].project_id, None}
        assert "instance.stop" not in {r["action"] for r in rows}  # red's
        assert "host.update" not in {r["action"] for r in rows}
        text = json.dumps(rows)
        assert host.name not in text and host.uri not in text
        migrate = next(r for r in rows if r["action"] == "instance.migrate")
        assert migrate["params"] == {"name": "web"} and migrate["message"] == ""
    own_login = [r["action"] for r in listed(client_for(blue_member)) if r["project_id"] is None]
    assert own_login == ["auth.login"]
    assert not [r for r in listed(client_for(blue_viewer)) if r["project_id"] is None]


def test_another_projects_event_is_not_found(trail, red_member):
    blue_event = events(action="instance.start")[0]
    assert client_for(red_member).get(f"/api/v1/audit/{blue_event.pk}/").status_code == 404


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_read_only(trail, admin, method):
    event = events()[0]
    api = client_for(admin)
    assert getattr(api, method)("/api/v1/audit/", {}, format="json").status_code == 405
    assert getattr(api, method)(f"/api/v1/audit/{event.pk}/", {}, format="json").status_code == 405
    assert getattr(api, method)("/api/v1/audit/export/", {}, format="json").status_code == 405


def test_filters(trail, admin, blue_member):
    api = client_for(admin)
    assert [r["action"] for r in listed(api, f"?user={blue_member.pk}")] == [
        "auth.login", "instance.start"
    ]  # fmt: skip
    assert {r["action"] for r in listed(api, f"?project={trail['db'].project_id}")} == {
        "instance.stop"
    }
    assert [r["action"] for r in listed(api, "?result=failed")] == ["instance.migrate"]
    assert len(listed(api, "?action_prefix=instance.")) == 3
    web = trail["web"]
    assert len(listed(api, f"?target_type=instance&target_id={web.pk}")) == 2
    assert listed(api, "?at_before=2000-01-01T00:00:00Z") == []
    assert len(listed(api, "?at_after=2000-01-01T00:00:00Z")) == 5
    assert api.get("/api/v1/audit/?result=bogus").status_code == 400


def test_export_csv_and_json_with_filters(trail, admin, blue_member):
    api = client_for(admin)
    response = api.get("/api/v1/audit/export/?format=csv&action_prefix=instance.")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == ["instance.migrate", "instance.stop", "instance.start"]
    assert json.loads(rows[0]["params"])["name"] == "web"
    response = api.get("/api/v1/audit/export/?format=json&result=ok")
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(b"".join(response.streaming_content))
    assert [e["action"] for e in body] == [
        "auth.login", "host.update", "instance.stop", "instance.start"
    ]  # fmt: skip
    # A tenant's export is their view.
    tenant = json.loads(
        b"".join(client_for(blue_member).get("/api/v1/audit/export/?format=json").streaming_content)
    )
    assert {e["action"] for e in tenant} == {"auth.login", "instance.migrate", "instance.start"}


def test_export_is_bounded(trail, admin, settings):
    settings.AUDIT_EXPORT_MAX_ROWS = 2
    body = b"".join(client_for(admin).get("/api/v1/audit/export/?format=json").streaming_content)
    assert len(json.loads(body)) == 2


def test_csv_cells_cannot_run_as_formulas(admin):
    audit_record(action="x.y", user=admin, target_type="thing", target_name="=HYPERLINK(1)")
    response = client_for(admin).get("/api/v1/audit/export/?format=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["target_name"] == "'=HYPERLINK(1)"


def test_source_and_address_ui_api_system(blue, blue_member, flavor, host):
    instance = make_instance(blue, flavor, host, name="old")
    api = client_for(blue_member)
    response = api.patch(
        f"/api/v1/instances/{instance.pk}/", {"name": "viaapi"}, format="json",
        REMOTE_ADDR="203.0.113.5",
    )  # fmt: skip
    assert response.status_code == 200, response.content
    event = events(action="instance.rename")[-1]
    assert (event.source, event.client_address, event.user) == ("api", "203.0.113.5", blue_member)

    browser = Client(REMOTE_ADDR="203.0.113.6")
    browser.force_login(blue_member)
    response = browser.post(f"/instances/{instance.pk}/action/stop/")
    assert response.status_code in (200, 302)
    event = events(action="instance.stop")[-1]
    assert (event.source, event.client_address, event.result) == ("ui", "203.0.113.6", "accepted")

    audit_record(action="system.thing")
    event = events(action="system.thing")[0]
    assert (event.source, event.client_address, event.user) == ("system", None, None)


def test_the_page_lists_filters_and_links_exports(trail, admin, blue_member):
    browser = Client()
    browser.force_login(admin)
    page = browser.get("/audit/?result=failed")
    assert page.status_code == 200
    html = page.content.decode()
    assert "instance.migrate" in html and "instance.start" not in html
    assert "/api/v1/audit/export/?result=failed&amp;format=csv" in html
    assert browser.post("/audit/").status_code == 405
    browser.force_login(blue_member)
    html = browser.get("/audit/").content.decode()
    assert "instance.start" in html and "instance.stop" not in html and "refused" not in html


def test_tenants_read_a_failed_jobs_public_error(blue, blue_member, admin, flavor, host):
    from cloudpanel.jobs.models import Job
    from cloudpanel.projects.access import GENERIC_JOB_FAILURE

    web = make_instance(blue, flavor, host, name="web")
    job = Job.objects.create(
        kind="instance.start", target_type="instance", target_id=web.pk, project=blue,
        status=Job.Status.FAILED, error=f"libvirt on {host.name} said no",
    )  # fmt: skip
    from cloudpanel.audit.jobs import record_job_end

    record_job_end(job)
    (row,) = [r for r in listed(client_for(blue_member)) if r["job_id"] == job.pk]
    assert row["message"] == GENERIC_JOB_FAILURE
    (row,) = [r for r in listed(client_for(admin)) if r["job_id"] == job.pk]
    assert host.name in row["message"]


def test_export_reads_in_batches(trail, admin, monkeypatch):
    from cloudpanel.audit import export

    monkeypatch.setattr(export, "CHUNK", 2)
    api = client_for(admin)
    body = json.loads(b"".join(api.get("/api/v1/audit/export/?format=json").streaming_content))
    assert [e["id"] for e in body] == sorted((e.pk for e in events()), reverse=True)
    text = b"".join(api.get("/api/v1/audit/export/?format=csv").streaming_content).decode()
    assert len(list(csv.DictReader(io.StringIO(text)))) == 5


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_export_streams_from_an_async_iterator(admin):
    """Django collects a synchronous iterator into a list under ASGI (and warns): the export
    hands it an async one."""
    import asyncio
    import warnings

    from asgiref.sync import sync_to_async

    from cloudpanel.asgi import application

    def session_cookie():
        audit_record(action="x.one", user=admin)
        audit_record(action="x.two", user=admin)
        browser = Client()
        browser.force_login(admin)
        return browser.cookies["sessionid"].value

    cookie = await sync_to_async(session_cookie)()
    path = "/api/v1/audit/export/"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"format=json&action_prefix=x.", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", f"sessionid={cookie}".encode())],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    messages, received = [], []

    async def receive():
        if not received:
            received.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()

    async def send(message):
        messages.append(message)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await application(scope, receive, send)
    assert messages[0]["status"] == 200, messages
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert [e["action"] for e in json.loads(body)] == ["x.two", "x.one"]
    assert not [w for w in caught if "consume synchronous iterators" in str(w.message)]


def test_dates_filter_too(trail, admin):
    api = client_for(admin)
    assert len(listed(api, "?at_after=2000-01-01")) == 5
    assert listed(api, "?at_before=2000-01-01") == []
    assert api.get("/api/v1/audit/?at_after=yesterday").status_code == 400
