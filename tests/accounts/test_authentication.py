"""401 versus 403 across the whole API, the old token endpoint, CSRF for session writes,
and the API's request rates."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from cloudpanel.accounts import throttling
from cloudpanel.accounts.models import ApiToken

from .conftest import bearer

pytestmark = pytest.mark.django_db

REALM = 'Bearer realm="api"'
METHODS = ("get", "post", "put", "patch", "delete")
# Readable by anyone, on purpose: an integrator writes a client from the schema before
# having an account; it describes routes, never data.
PUBLIC = {"/api/schema/", "/api/docs/"}
# Anyone may ask for a token with a username and a password (rate limited, axes lockout).
SIGN_IN = "/api/v1/auth/token/"


def _concrete(pattern: str) -> str:
    """A URL pattern with a value in each parameter (the pk need not exist: credentials
    are checked before any lookup)."""
    path = re.sub(
        r"\(\?P<(\w+)>[^)]*\)", lambda m: "json" if m[1] == "format" else "1", pattern
    )  # router regexes
    path = re.sub(
        r"<(?:\w+:)?(\w+)>", lambda m: ".json" if m[1] == "format" else "1", path
    )  # path() converters
    path = path.replace("/?$", "").replace("^", "").replace("$", "")
    return "/" + path.replace("\\.", ".")


def api_paths() -> list[str]:
    """Every route under /api/, from the URL conf: a new route is covered by itself."""

    def walk(patterns, prefix):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                yield prefix + str(entry.pattern)

    paths = {_concrete(p) for p in walk(get_resolver().url_patterns, "")}
    return sorted(p for p in paths if p.startswith("/api/"))


def test_the_route_list_is_complete():
    paths = api_paths()
    for expected in (
        "/api/v1/projects/",
        "/api/v1/projects/1/",
        "/api/v1/tokens/1/revoke/",
        "/api/v1/instances/1/start/",
        "/api/v1/instances/1/snapshots/1/revert/",
        "/api/v1/hosts.json",
        "/api/v1/",
        SIGN_IN,
        *PUBLIC,
    ):
        assert expected in paths, expected
    assert len(paths) > 100


def test_anonymous_is_refused_with_401_on_every_api_route():
    client = APIClient()
    failures = []
    for path in api_paths():
        if path in PUBLIC or path == SIGN_IN:
            continue
        for method in METHODS:
            response = getattr(client, method)(path, {}, format="json")
            if response.status_code != 401 or response.get("WWW-Authenticate") != REALM:
                failures.append((method, path, response.status_code))
    assert failures == []


@pytest.mark.parametrize("secret", ["cp_unknownunknownunknown", "f" * 40])
def test_a_bad_token_is_refused_with_401_on_every_api_route(secret):
    """A bad token is a 401 too, even where anonymous would be let in (a client that sends
    a token must learn that it is wrong), except on the sign-in endpoint, which ignores it."""
    client = bearer(secret)
    failures = []
    for path in api_paths():
        if path == SIGN_IN:
            continue
        response = client.get(path)
        if response.status_code != 401 or response.get("WWW-Authenticate") != REALM:
            failures.append((path, response.status_code))
    assert failures == []


def test_the_schema_and_the_docs_are_public():
    for path in PUBLIC:
        assert APIClient().get(path).status_code == 200, path


def test_authenticated_but_not_allowed_is_403_not_401(member_user, alice_token):
    response = bearer(alice_token.secret).get("/api/v1/hosts/")
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response


def test_the_old_token_endpoint_issues_a_personal_token(member_user, two_projects):
    response = APIClient().post(
        SIGN_IN, {"username": "alice", "password": "pw-alice-123"}, format="json"
    )
    assert response.status_code == 200
    assert list(response.json()) == ["token"]
    secret = response.json()["token"]
    assert secret.startswith("cp_")
    token = ApiToken.objects.get(user=member_user)
    assert token.name == "api login" and token.project is None and not token.read_only
    assert abs(token.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=5)
    # As the design contract has clients send it, and as Bearer.
    for scheme in ("Token", "Bearer"):
        assert bearer(secret, scheme).get("/api/v1/projects/").status_code == 200
    # A stale token in the header does not stop anyone from signing in again.
    again = bearer("cp_stalestalestalestale").post(
        SIGN_IN, {"username": "alice", "password": "pw-alice-123"}, format="json"
    )
    assert again.status_code == 200 and again.json()["token"] != secret
    wrong = APIClient().post(SIGN_IN, {"username": "alice", "password": "nope"}, format="json")
    assert wrong.status_code == 400
    assert ApiToken.objects.filter(user=member_user).count() == 2


def test_drf_plain_tokens_are_gone():
    from django.apps import apps

    assert not apps.is_installed("rest_framework.authtoken")


def test_a_session_write_needs_the_csrf_token(member_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member_user)
    response = client.post("/api/v1/tokens/", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    # A form page too.
    assert client.post("/account/tokens/", {"name": "x", "expires_in_days": 5}).status_code == 403
    assert not ApiToken.objects.exists()
    client.get("/account/tokens/")  # sets the csrftoken cookie, as the browser's page does
    csrf = client.cookies["csrftoken"].value
    response = client.post(
        "/api/v1/tokens/", {"name": "x"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert response.status_code == 201
    # A token request needs no CSRF token: no cookie makes it.
    token_client = Client(
        enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}"
    )
    response = token_client.post("/api/v1/tokens/", {"name": "y"}, content_type="application/json")
    assert response.status_code == 201


def test_api_requests_per_user_are_throttled_with_429_and_retry_after(
    monkeypatch, alice_token, member_user
):
    monkeypatch.setattr(throttling.UserRate, "rate", "3/minute", raising=False)
    client = bearer(alice_token.secret)
    for _ in range(3):
        assert client.get("/api/v1/projects/").status_code == 200
    response = client.get("/api/v1/projects/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"].lower()
    # Per user, whichever way they come in: the session is the same user.
    session = APIClient()
    session.force_login(member_user)
    assert session.get("/api/v1/projects/").status_code == 429
    # Another user has their own budget.
    other = APIClient()
    other.force_authenticate(type(member_user).objects.create_user("bob", password="pw-bob-12345"))
    assert other.get("/api/v1/projects/").status_code == 200


def test_anonymous_reads_are_throttled_per_address(monkeypatch):
    monkeypatch.setattr(throttling.AnonRate, "rate", "2/minute", raising=False)
    client = APIClient()
    for _ in range(2):
        assert client.get("/api/docs/").status_code == 200
    response = client.get("/api/docs/")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert client.get("/api/docs/", REMOTE_ADDR="127.0.0.9").status_code == 200
