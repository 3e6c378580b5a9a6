"""Platform pieces: /healthz, the OpenAPI schema and docs offline, pages and login."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_health():
    from cloudpanel import health

    health.reset_cache()
    yield
    health.reset_cache()


def test_healthz_is_200_with_database_redis_and_a_worker(client, admin_user, live_worker):
    client.force_login(admin_user)
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert live_worker.worker_name in body["workers"]["names"]


def test_healthz_tells_anonymous_callers_only_ok_or_not(client, member_user, live_worker):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    client.force_login(member_user)  # signed in, but not staff
    assert client.get("/healthz").json() == {"status": "ok"}


def test_healthz_is_503_when_redis_is_down(client, admin_user, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json() == {"status": "degraded"}
    client.force_login(admin_user)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["redis"]["ok"] is False
    assert body["workers"]["ok"] is False


def test_healthz_without_workers_is_503_and_the_answer_is_kept(client, admin_user, monkeypatch):
    """With no worker a ping waits out its timeout: anonymous callers share one answer for a
    few seconds instead of each waiting (the fast path asks for the first reply only)."""
    from cloudpanel import health

    pings = []

    def no_workers(limit):
        pings.append(limit)
        return {"ok": False, "count": 0, "names": []}

    monkeypatch.setattr(health, "_ping_workers", no_workers)
    for _ in range(3):
        response = client.get("/healthz")
        assert response.status_code == 503 and response.json() == {"status": "degraded"}
    assert pings == [1]
    client.force_login(admin_user)  # staff: a full, fresh ping
    assert client.get("/healthz").json()["workers"]["ok"] is False
    assert pings == [1, None]


def test_openapi_schema_documents_the_api(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/hosts/", "/api/v1/hosts/{id}/refresh/", "/api/v1/jobs/",
                 "/api/v1/jobs/{id}/cancel/", "/api/v1/auth/token/"):
        assert path in paths


def test_api_docs_work_offline(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "https://" not in page.split("<body")[0]
    asset = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert asset in page
    response = client.get(asset)
    assert response.status_code == 200


def test_login_page_and_redirect(client):
    assert client.get("/login/").status_code == 200
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    """CLOUDPANEL_REQUIRE_SECRET_KEY=true (several machines must share one key) refuses the
    generated key; so does a var/secret_key that cannot be read, with a message saying so."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    env.update(CLOUDPANEL_REQUIRE_SECRET_KEY="true", CLOUDPANEL_VAR_DIR=str(tmp_path))
    code = "import django; django.setup()"

    def start():
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )

    result = start()
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    assert not (tmp_path / "secret_key").exists()
    env["SECRET_KEY"] = "x" * 50
    assert start().returncode == 0

    del env["SECRET_KEY"], env["CLOUDPANEL_REQUIRE_SECRET_KEY"]
    (tmp_path / "secret_key").mkdir()  # in the way of the key file
    result = start()
    assert result.returncode != 0
    assert "SECRET_KEY is not set and" in result.stderr and "cannot be created" in result.stderr


def test_every_periodic_task_runs_on_the_upkeep_queue(settings):
    """Health, reaper and reconcile must never wait behind long jobs on the job queue."""
    from cloudpanel.celery import app

    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        route = app.amqp.router.route({}, entry["task"])
        assert route["queue"].name == "periodic", entry["task"]
    assert app.amqp.router.route({}, "jobs.run_job")["queue"].name == "celery"
    procfile = (settings.BASE_DIR / "Procfile").read_text()
    assert "-Q periodic" in procfile and "-Q celery" in procfile


def test_every_model_change_ships_its_migration():
    """An upgrade must never meet a model without its migration (an HTTP 500 at peers)."""
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_the_openapi_schema_generates_without_warnings(tmp_path):
    # A warning is a field the schema had to guess (a project id typed as a string...):
    # what an integrator writing a client from the schema alone would get wrong.
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"))
    assert (tmp_path / "s.yaml").stat().st_size > 0
