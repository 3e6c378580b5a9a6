"""/account/tokens/: create (the secret shown once), the list with last use, revoke; and
host credentials, which no page or API answer ever shows."""

from __future__ import annotations

import pytest
from django.test import Client

from cloudpanel.accounts.models import ApiToken
from cloudpanel.accounts.tokens import issue_token

from .conftest import bearer

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_needs_a_sign_in():
    response = Client().get("/account/tokens/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_create_use_and_revoke_from_the_page(member_user, two_projects):
    alpha = two_projects[0]
    client = signed_in(member_user)
    page = client.get("/account/tokens/")
    assert page.status_code == 200 and "No API tokens yet" in page.content.decode()
    response = client.post(
        "/account/tokens/",
        {"name": "deploy", "expires_in_days": 30, "project": alpha.pk, "read_only": "on"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=member_user)
    assert token.name == "deploy" and token.project == alpha and token.read_only
    secret = html.split('id="new-token">')[1].split("<")[0]
    assert secret.startswith("cp_") and secret.startswith(token.prefix)
    assert "shown this once" in html
    # Listed, never used yet; the secret is not on the page any more.
    html = client.get("/account/tokens/").content.decode()
    assert secret not in html and token.prefix in html
    assert "never" in html and "read-only" in html and "alpha" in html
    assert bearer(secret).get("/api/v1/projects/").status_code == 200
    token.refresh_from_db()
    html = client.get("/account/tokens/").content.decode()
    assert token.last_used_at.strftime("%Y-%m-%d %H:%M") in html
    # Revoke.
    response = client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    html = response.content.decode()
    assert "revoked" in html and "Revoke</button>" not in html
    assert bearer(secret).get("/api/v1/projects/").status_code == 401


def test_the_form_refuses_another_users_project_and_bad_expiry(member_user, two_projects):
    gamma = two_projects[2]
    client = signed_in(member_user)
    for data in (
        {"name": "x", "expires_in_days": 30, "project": gamma.pk},
        {"name": "x", "expires_in_days": 400},
        {"name": "", "expires_in_days": 30},
    ):
        response = client.post("/account/tokens/", data)
        assert response.status_code == 200
        assert "has-error" in response.content.decode(), data
    assert gamma.name not in client.get("/account/tokens/").content.decode()
    assert not ApiToken.objects.exists()


def test_nobody_revokes_someone_elses_token(member_user, admin_user):
    issued = issue_token(member_user, name="mine")
    client = signed_in(admin_user)
    assert client.get("/account/tokens/").content.decode().count(issued.token.prefix) == 0
    assert client.post(f"/account/tokens/{issued.token.pk}/revoke/").status_code == 404
    assert bearer(issued.secret).get("/api/v1/projects/").status_code == 200
    assert Client().get(f"/account/tokens/{issued.token.pk}/revoke/").status_code == 302


def test_host_credentials_are_encrypted_and_never_shown(admin_user):
    from hosts.models import Host
    from hosts.services import host_create

    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n"
    host = host_create(
        name="remote", uri="qemu+ssh://root@127.0.0.1:1/system", ssh_private_key=key, sync=False
    )
    stored = Host.objects.get(pk=host.pk).ssh_private_key_encrypted
    assert stored and "c2VjcmV0" not in stored
    page = signed_in(admin_user)
    api = bearer(issue_token(admin_user, name="admin").secret)
    for client, url in (
        (page, "/hosts/"),
        (page, f"/hosts/{host.pk}/"),
        (api, "/api/v1/hosts/"),
        (api, f"/api/v1/hosts/{host.pk}/"),
        (api, "/api/schema/"),
    ):
        body = client.get(url).content.decode()
        assert "c2VjcmV0" not in body and stored not in body, url
