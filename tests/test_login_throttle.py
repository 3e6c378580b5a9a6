"""Sign-in throttling and lockout (django-axes): the login form and the API token endpoint."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed sign-in attempts"
TOKEN_URL = "/api/v1/auth/token/"


@pytest.fixture(autouse=True)
def _fast_hashes_and_fresh_rates(settings):
    # A wrong password costs a full hash; these tests fail many on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # the token endpoint's rate counts live in the cache
    yield
    cache.clear()


def _login(client, username, password, address="127.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def _token(username, password, address="127.0.0.1"):
    return APIClient().post(
        TOKEN_URL,
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_form_locks_a_username_after_the_limit_with_a_clear_message(client, member_user, settings):
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        response = _login(client, "alice", "wrong")
        assert response.status_code == 200 and "alert-error" in response.content.decode()
    response = _login(client, "alice", "wrong")
    assert response.status_code == 429
    # The right password no longer helps, and the page says why, in the login layout.
    response = _login(client, "alice", "pw-alice-123")
    html = response.content.decode()
    assert response.status_code == 429
    assert LOCKED in html and "15 minutes" in html and "administrator" in html
    assert "auth-card" in html and 'href="/login/"' in html
    assert int(response["Retry-After"]) == 15 * 60
    assert not _signed_in(client)


def test_a_lockout_holds_only_for_the_address_it_came_from(client, member_user, settings):
    """An attacker elsewhere cannot lock the real user (or the admin) out."""
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "alice", "wrong", address="127.0.0.9")
    assert _login(client, "alice", "pw-alice-123", address="127.0.0.9").status_code == 429
    response = _login(client, "alice", "pw-alice-123", address="127.0.0.1")
    assert response.status_code == 302 and _signed_in(client)


def test_an_address_spraying_usernames_is_locked_out(client, admin_user, member_user, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    for n in range(7):
        assert _login(client, f"user{n}", "guess", address="127.0.0.7").status_code == 200
    # A success with the attacker's own account does not wipe the address's count.
    assert _login(client, "alice", "pw-alice-123", address="127.0.0.7").status_code == 302
    client.logout()
    assert _login(client, "user7", "guess", address="127.0.0.7").status_code == 429
    # Locked for every username from there, the admin's included; not elsewhere.
    assert _login(client, "root-admin", "pw-admin-123", address="127.0.0.7").status_code == 429
    assert _login(client, "root-admin", "pw-admin-123", address="127.0.0.1").status_code == 302


def test_a_success_before_the_limit_forgets_that_users_failures(client, member_user, settings):
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        _login(client, "alice", "wrong")
    assert _login(client, "alice", "pw-alice-123").status_code == 302
    client.logout()
    for _ in range(limit - 1):
        assert _login(client, "alice", "wrong").status_code == 200


def test_admin_unlocks_a_username_and_an_address(client, admin_user, member_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "alice", "wrong")
    assert _login(client, "alice", "pw-alice-123").status_code == 429

    # The Django admin lists the attempts (deleting them there unlocks too).
    admin = type(client)()
    admin.force_login(admin_user)
    page = admin.get("/django-admin/axes/accessattempt/")
    assert page.status_code == 200 and "alice" in page.content.decode()

    call_command("axes_reset_username", "alice")
    assert _login(client, "alice", "pw-alice-123").status_code == 302
    client.logout()

    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 3
    for n in range(3):
        _login(client, f"user{n}", "guess", address="127.0.0.5")
    assert _login(client, "alice", "pw-alice-123", address="127.0.0.5").status_code == 429
    call_command("axes_reset_ip", "127.0.0.5")
    assert _login(client, "alice", "pw-alice-123", address="127.0.0.5").status_code == 302


def test_token_endpoint_locks_out_with_a_json_429(member_user, settings):
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        assert _token("alice", "wrong").status_code == 400
    assert _token("alice", "wrong").status_code == 429
    response = _token("alice", "pw-alice-123")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert LOCKED in response.json()["detail"]
    assert int(response["Retry-After"]) == 15 * 60
    # The lockout is shared with the form: same attempts, same user and address.
    assert _login(APIClient(), "alice", "pw-alice-123").status_code == 429
    assert _token("alice", "pw-alice-123", address="127.0.0.2").status_code == 200


def test_a_forged_forwarded_for_header_changes_nothing(member_user, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        APIClient().post(
            TOKEN_URL,
            {"username": "alice", "password": "wrong"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        )
    response = APIClient().post(
        TOKEN_URL,
        {"username": "alice", "password": "pw-alice-123"},
        format="json",
        HTTP_X_FORWARDED_FOR="203.0.113.99",
    )
    assert response.status_code == 429 and LOCKED in response.json()["detail"]


def test_token_endpoint_has_a_rate_per_address(member_user):
    """On top of the lockout: requests that never reach a password check count too, whatever
    X-Forwarded-For a client sends."""
    responses = [
        APIClient().post(TOKEN_URL, {}, format="json", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
        for n in range(20)
    ]
    assert {r.status_code for r in responses} == {400}
    response = APIClient().post(TOKEN_URL, {}, format="json")
    assert response.status_code == 429
    assert "throttled" in response.json()["detail"] and int(response["Retry-After"]) > 0
    assert _token("alice", "pw-alice-123", address="127.0.0.3").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_lockout_under_asgi(member_user, settings):
    """The served app runs axes' async middleware path; it locks out the same way."""
    from django.test import AsyncClient

    client = AsyncClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        await client.post("/login/", {"username": "alice", "password": "wrong"})
    response = await client.post("/login/", {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 429 and LOCKED in response.content.decode()
    response = await client.post(
        TOKEN_URL,
        {"username": "alice", "password": "pw-alice-123"},
        content_type="application/json",
    )
    assert response.status_code == 429 and LOCKED in response.json()["detail"]
