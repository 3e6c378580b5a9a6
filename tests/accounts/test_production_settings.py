"""The production switches in cloudpanel/settings.py, read in a fresh process per
environment, with Django's own deployment checks (`manage.py check --deploy`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.core import checks
ids = sorted({m.id for m in checks.run_checks(include_deployment_checks=True)})
print(json.dumps({
    "checks": ids,
    "DEBUG": settings.DEBUG,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": settings.CSRF_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": settings.SECURE_HSTS_SECONDS,
    "SECURE_PROXY_SSL_HEADER": settings.SECURE_PROXY_SSL_HEADER,
    "rates": settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
    "auth": settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"],
}))
"""
# What `check --deploy` still says in production, and why that is right here:
# W008 SECURE_SSL_REDIRECT: the TLS proxy redirects http (SECURE_SSL_REDIRECT=true exists);
# W005/W021 HSTS subdomains and preload: the panel cannot know its parent domain's policy.
ARGUED_AWAY = {"security.W008", "security.W005", "security.W021"}
LONG_KEY = "k" * 20 + "Q9z!x" * 12


def probe(**env) -> dict:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "HTTPS", "SECURE_COOKIES", "TRUST_PROXY_HEADERS")
        and not k.startswith("API_")
    }
    environ.update({"DJANGO_SETTINGS_MODULE": "cloudpanel.settings", "SECRET_KEY": LONG_KEY})
    environ.update(env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environ, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def production():
    return probe(HTTPS="true", TRUST_PROXY_HEADERS="true", ALLOWED_HOSTS="panel.example.org")


def test_production_passes_the_deployment_checks(production):
    security = {c for c in production["checks"] if c.startswith("security.")}
    assert security <= ARGUED_AWAY, security
    assert production["DEBUG"] is False
    assert production["SESSION_COOKIE_SECURE"] and production["CSRF_COOKIE_SECURE"]
    assert production["SECURE_HSTS_SECONDS"] == 31536000
    assert production["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_the_laptop_default_is_plain_http_with_debug_off():
    laptop = probe()
    assert laptop["DEBUG"] is False  # `make run` sets no DEBUG: off
    assert not laptop["SESSION_COOKIE_SECURE"] and not laptop["CSRF_COOKIE_SECURE"]
    assert laptop["SECURE_HSTS_SECONDS"] == 0
    # The proxy header is trusted only when asked: any client could send it.
    assert laptop["SECURE_PROXY_SSL_HEADER"] is None
    # So the deployment checks say exactly what the switches would fix.
    assert {"security.W004", "security.W012", "security.W016"} <= set(laptop["checks"])
    assert laptop["auth"][0] == "cloudpanel.accounts.authentication.ApiTokenAuthentication"
    assert laptop["rates"]["user"] and laptop["rates"]["anon"]


def test_the_switches_one_by_one():
    https_only = probe(HTTPS="true")
    assert https_only["SESSION_COOKIE_SECURE"] and https_only["SECURE_HSTS_SECONDS"]
    assert https_only["SECURE_PROXY_SSL_HEADER"] is None
    # The older name and an https trusted origin still mean HTTPS.
    assert probe(SECURE_COOKIES="true")["CSRF_COOKIE_SECURE"] is True
    assert probe(CSRF_TRUSTED_ORIGINS="https://panel.example.org")["SESSION_COOKIE_SECURE"]
    dev = probe(DEBUG="true", API_USER_RATE="none", API_ANON_RATE="5/second")
    assert dev["DEBUG"] is True and "security.W018" in dev["checks"]
    assert dev["rates"]["user"] is None and dev["rates"]["anon"] == "5/second"


def test_hsts_is_sent_only_on_requests_the_trusted_proxy_says_are_https(settings, client):
    settings.SECURE_HSTS_SECONDS = 3600
    assert "Strict-Transport-Security" not in client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = type(client)().get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"] == "max-age=3600"


def test_the_session_cookie_is_http_only_and_secure_under_https(settings, member_user):
    from django.test import Client

    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie["secure"] and cookie["httponly"]
    assert client.get("/account/tokens/").cookies["csrftoken"]["secure"]
