"""Safe defaults: no debug mode unless asked for, a private secret key, JSON errors under
/api/ (404 and 500 included), bounded JSON bodies, error pages that show nothing inside."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

SETTINGS_SHOWN = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_PROXY_SSL_HEADER",
)
TRACE_MARKER = "api-view-exploded-7c1e"


def _settings_in_a_clean_environment(var_dir, **extra) -> dict:
    """The settings a fresh process gets from an environment without any of ours."""
    ours = (
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "SECURE_COOKIES",
        "CLOUDPANEL_REQUIRE_SECRET_KEY",
    )
    env = {k: v for k, v in os.environ.items() if k not in ours}
    env.update(CLOUDPANEL_VAR_DIR=str(var_dir), **extra)
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {SETTINGS_SHOWN!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_debug_is_off_by_default_and_a_private_secret_key_is_kept(tmp_path):
    first = _settings_in_a_clean_environment(tmp_path)
    assert first["DEBUG"] is False
    assert "testserver" not in first["ALLOWED_HOSTS"]
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first["SECRET_KEY"] == key_file.read_text().strip() and len(first["SECRET_KEY"]) > 40
    assert _settings_in_a_clean_environment(tmp_path)["SECRET_KEY"] == first["SECRET_KEY"]
    assert sorted(p.name for p in tmp_path.iterdir() if "secret" in p.name) == ["secret_key"]
    # DEBUG only when asked for.
    assert _settings_in_a_clean_environment(tmp_path, DEBUG="true")["DEBUG"] is True


def test_cookies_work_over_plain_http_unless_behind_tls(tmp_path):
    plain = _settings_in_a_clean_environment(tmp_path)
    assert plain["SESSION_COOKIE_SECURE"] is False and plain["CSRF_COOKIE_SECURE"] is False
    assert not plain["SECURE_HSTS_SECONDS"] and plain["SECURE_PROXY_SSL_HEADER"] is None
    for env in ({"CSRF_TRUSTED_ORIGINS": "https://panel.example.org"}, {"SECURE_COOKIES": "1"}):
        tls = _settings_in_a_clean_environment(tmp_path, **env)
        assert tls["SESSION_COOKIE_SECURE"] is True and tls["CSRF_COOKIE_SECURE"] is True
        assert tls["SECURE_HSTS_SECONDS"] > 0
        # uvicorn already takes X-Forwarded-Proto from the proxies it trusts; Django trusts
        # the header itself only when told to.
        assert tls["SECURE_PROXY_SSL_HEADER"] is None
    proxied = _settings_in_a_clean_environment(tmp_path, HTTPS="true", TRUST_PROXY_HEADERS="true")
    assert proxied["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_sign_in_over_http_and_static_files_with_debug_off(client, admin_user, settings):
    assert settings.DEBUG is False
    response = client.post("/login/", {"username": "root-admin", "password": "pw-admin-123"})
    assert response.status_code == 302
    assert not response.cookies["sessionid"]["secure"]
    assert client.get("/").status_code == 200
    static = client.get("/static/css/cloudpanel.css")
    assert static.status_code == 200 and static["Content-Type"].startswith("text/css")


def test_unknown_api_path_is_json_404(api_client):
    for client in (api_client, Client()):
        response = client.get("/api/v1/nope/")
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": "Not found.", "code": "not_found", "errors": {}}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_api_write_without_trailing_slash_is_json_404_naming_the_path(api_client, method):
    response = getattr(api_client, method)("/api/v1/hosts", {"name": "x"}, format="json")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "Not found. API paths end with a slash: /api/v1/hosts/",
        "code": "not_found",
        "errors": {},
    }


def test_api_write_without_trailing_slash_is_not_a_500_in_debug_either(admin_user, settings):
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    assert client.post("/api/v1/hosts", {"name": "x"}).status_code == 404


def test_deeply_nested_json_is_a_clear_400(api_client, anon_client):
    for client, url in (
        (api_client, "/api/v1/hosts/"),
        (anon_client, "/api/v1/auth/token/"),
        (api_client, "/api/v1/images/"),
    ):
        response = client.post(url, "[" * 10000, content_type="application/json")
        assert response.status_code == 400, url
        assert "nested too deeply" in response.json()["detail"]
    # Valid JSON deeper than the cap is refused too; shallow JSON goes on to validation.
    deep = "[" * 65 + "]" * 65
    response = api_client.post("/api/v1/hosts/", deep, content_type="application/json")
    assert response.status_code == 400 and "at most 64 levels" in response.json()["detail"]
    shallow = json.dumps({"name": "demo", "uri": [[["x"]]]})
    response = api_client.post("/api/v1/hosts/", shallow, content_type="application/json")
    assert response.status_code == 400 and "uri" in response.json()["errors"]


def test_oversize_json_body_is_a_clear_400(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"name": "demo", "uri": "test:///default", "pad": "x" * 20_000})
    response = api_client.post("/api/v1/hosts/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Request body too large: at most 10000 bytes.",
        "code": "too_large",
        "errors": {},
    }


def test_json_parser_reads_no_more_than_the_limit(settings):
    """Under ASGI, DRF parses straight from the body stream, past Django's own size check."""
    import io

    from rest_framework.exceptions import ParseError

    from cloudpanel.parsers import JSONParser

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    stream = io.BytesIO(b'{"a": "' + b"x" * 1000 + b'"}')
    with pytest.raises(ParseError, match="at most 100 bytes"):
        JSONParser().parse(stream)
    assert stream.tell() == 101
    assert JSONParser().parse(io.BytesIO(b'{"a": [1, {"b": null}]}')) == {"a": [1, {"b": None}]}


def test_uncaught_exception_in_an_api_view_is_json_500_without_a_trace(admin_user, monkeypatch):
    from hosts.api.views import HostViewSet

    def explode(self, request, *args, **kwargs):
        raise RuntimeError(TRACE_MARKER)

    monkeypatch.setattr(HostViewSet, "list", explode)
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get("/api/v1/hosts/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "Internal server error",
        "code": "server_error",
        "errors": {},
    }


def test_uncaught_exception_in_a_page_is_the_plain_500_page(admin_user, monkeypatch):
    import cloudpanel.views

    def explode(user):
        raise RuntimeError(TRACE_MARKER)

    monkeypatch.setattr(cloudpanel.views, "job_list_for", explode)
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in html
    assert TRACE_MARKER not in html and "Traceback" not in html and "REDIS" not in html


def test_unknown_page_is_404_in_the_layout_without_the_url_conf(admin_client_for_pages):
    for client in (admin_client_for_pages, Client()):
        response = client.get("/no-such-page/")
        html = response.content.decode()
        assert response.status_code == 404
        assert "Not found" in html and 'class="sidebar"' in html
        # What Django's debug page shows: the URL patterns tried, and the settings.
        for leak in ("URLconf", "URL patterns", "healthz", "api/schema", "<int:", "DEBUG"):
            assert leak not in html


def test_bad_request_pages(client, settings):
    response = Client(HTTP_HOST="evil.example").get("/login/")
    assert response.status_code == 400 and "Bad request" in response.content.decode()
    response = Client(HTTP_HOST="evil.example").get("/api/v1/hosts/")
    assert response.status_code == 400
    assert response.json() == {"detail": "Bad request.", "code": "bad_request", "errors": {}}


@pytest.fixture
def admin_client_for_pages(client, admin_user):
    client.force_login(admin_user)
    return client


def test_a_refused_form_post_is_explained_in_the_layout(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post("/hosts/new/", {"name": "x", "uri": "test:///default"})
    assert response.status_code == 403
    body = response.content.decode()
    assert "This form could not be sent" in body and "DEBUG" not in body
    api = client.post("/api/v1/flavors/", {"name": "f", "vcpus": 1, "ram_mib": 64, "disk_gib": 1})
    assert api.status_code == 403 and "CSRF" in api.json()["detail"]
    assert api.json()["code"] == "permission_denied"  # DRF's own CSRF check refused it
