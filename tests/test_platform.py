"""Platform pieces: /healthz, the OpenAPI schema and docs offline, pages and login."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_is_200_with_database_redis_and_a_worker(client, live_worker):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert live_worker.worker_name in body["workers"]["names"]


def test_healthz_is_503_when_redis_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["redis"]["ok"] is False
    assert body["workers"]["ok"] is False


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
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(DEBUG="false", CLOUDPANEL_VAR_DIR=str(tmp_path))
    code = "import django; django.setup()"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    env["SECRET_KEY"] = "x" * 50
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0


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
