"""Personal API tokens through the API: create (the secret once, only its digest stored),
use (Bearer and Token), expire, revoke, read-only, scoped, last use."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cloudpanel.accounts.models import ApiToken
from cloudpanel.accounts.tokens import LAST_USED_RESOLUTION, issue_token
from cloudpanel.projects.models import Project

from .conftest import bearer

pytestmark = pytest.mark.django_db

REALM = 'Bearer realm="api"'


def session_api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def assert_401(response, *phrases):
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == REALM
    detail = response.json()["detail"]
    for phrase in phrases:
        assert phrase in detail


def test_create_shows_the_secret_once_and_stores_only_its_digest(member_user, two_projects):
    client = session_api(member_user)
    response = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["token"]
    assert secret.startswith("cp_") and len(secret) >= 40
    row = ApiToken.objects.get(pk=body["id"])
    assert row.user == member_user and row.name == "ci"
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert row.prefix == secret[:12] == body["prefix"]
    # The secret is in no column: only its first 12 characters are.
    for field in ApiToken._meta.concrete_fields:
        assert secret not in str(getattr(row, field.attname))
    # Default expiry: 90 days.
    assert abs(row.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=5)
    assert body["state"] == "active" and body["read_only"] is False and body["project"] is None
    # Never again: not in the list, not in the detail.
    for url in ("/api/v1/tokens/", f"/api/v1/tokens/{row.pk}/"):
        answer = client.get(url)
        assert answer.status_code == 200
        assert secret not in answer.content.decode() and '"token"' not in answer.content.decode()


def test_the_token_works_with_the_bearer_and_the_token_scheme(alice_token, two_projects):
    for scheme in ("Bearer", "Token", "bearer"):
        response = bearer(alice_token.secret, scheme).get("/api/v1/projects/")
        assert response.status_code == 200, scheme
        names = {p["name"] for p in response.json()["results"]}
        assert names == {"alpha", "beta"}


def test_missing_or_bad_credentials_are_401_with_www_authenticate(alice_token):
    assert_401(APIClient().get("/api/v1/projects/"))
    assert_401(bearer("cp_not-a-token-at-all-xxxxxxxx").get("/api/v1/projects/"), "Invalid")
    assert_401(bearer("nonsense").get("/api/v1/projects/"), "Invalid")
    # The right prefix with a wrong rest: compared on the digest.
    forged = alice_token.secret[:12] + "x" * (len(alice_token.secret) - 12)
    assert_401(bearer(forged).get("/api/v1/projects/"), "Invalid")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice_token.secret} extra")
    assert_401(client.get("/api/v1/projects/"))


def test_an_expired_token_is_refused(alice_token):
    client = bearer(alice_token.secret)
    assert client.get("/api/v1/projects/").status_code == 200
    ApiToken.objects.filter(pk=alice_token.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_401(client.get("/api/v1/projects/"), "expired")


def test_an_inactive_users_token_is_refused(alice_token, member_user):
    member_user.is_active = False
    member_user.save()
    assert_401(bearer(alice_token.secret).get("/api/v1/projects/"))


@pytest.mark.parametrize("how", ["delete", "revoke"])
def test_a_revoked_token_is_refused_and_stays_listed(alice_token, member_user, how):
    token = alice_token.token
    client = bearer(alice_token.secret)
    assert client.get("/api/v1/projects/").status_code == 200
    owner = session_api(member_user)
    if how == "delete":
        assert owner.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    else:
        response = owner.post(f"/api/v1/tokens/{token.pk}/revoke/")
        assert response.status_code == 200 and response.json()["state"] == "revoked"
    assert_401(client.get("/api/v1/projects/"), "revoked")
    listed = owner.get("/api/v1/tokens/").json()["results"]
    assert [(t["id"], t["state"]) for t in listed] == [(token.pk, "revoked")]
    assert listed[0]["last_used_at"] is not None


def test_tokens_are_personal(alice_token, admin_user):
    """Nobody else lists, reads or revokes them, admins included: 404."""
    admin = session_api(admin_user)
    assert admin.get("/api/v1/tokens/").json()["results"] == []
    pk = alice_token.token.pk
    assert admin.get(f"/api/v1/tokens/{pk}/").status_code == 404
    assert admin.delete(f"/api/v1/tokens/{pk}/").status_code == 404
    assert admin.post(f"/api/v1/tokens/{pk}/revoke/").status_code == 404
    assert bearer(alice_token.secret).get("/api/v1/projects/").status_code == 200


def test_a_read_only_token_reads_but_changes_nothing(admin_user, member_user, two_projects):
    alpha = two_projects[0]
    admin_ro = bearer(issue_token(admin_user, name="ro", read_only=True).secret)
    assert admin_ro.get("/api/v1/hosts/").status_code == 200
    assert admin_ro.get("/api/v1/projects/").status_code == 200
    for method, url, data in (
        ("post", "/api/v1/projects/", {"name": "new"}),
        ("patch", f"/api/v1/projects/{alpha.pk}/", {"description": "x"}),
        ("delete", f"/api/v1/projects/{alpha.pk}/", None),
        ("post", "/api/v1/hosts/", {"name": "h", "uri": "test:///default"}),
        ("post", "/api/v1/tokens/", {"name": "wider"}),
        ("post", "/api/v1/keypairs/", {"name": "k", "public_key": "ssh-ed25519 AAAA"}),
    ):
        response = getattr(admin_ro, method)(url, data, format="json")
        assert response.status_code == 403, (method, url, response.content)
        assert "read-only" in response.json()["detail"]
    assert not Project.objects.filter(name="new").exists()
    assert ApiToken.objects.filter(user=admin_user).count() == 1
    member_ro = bearer(issue_token(member_user, name="ro", read_only=True).secret)
    assert member_ro.get(f"/api/v1/projects/{alpha.pk}/").status_code == 200
    response = member_ro.post("/api/v1/instances/", {"name": "vm", "project": alpha.pk})
    assert response.status_code == 403


def test_a_scoped_token_reaches_its_project_only(member_user, two_projects):
    alpha, beta, gamma = two_projects
    client = bearer(issue_token(member_user, name="alpha only", project=alpha).secret)
    response = client.get("/api/v1/projects/")
    assert [p["name"] for p in response.json()["results"]] == ["alpha"]
    assert client.get(f"/api/v1/projects/{alpha.pk}/").status_code == 200
    # alice's own other project is as unknown to this token as someone else's.
    assert client.get(f"/api/v1/projects/{beta.pk}/").status_code == 404
    assert client.get(f"/api/v1/projects/{gamma.pk}/").status_code == 404


def test_a_scoped_token_does_not_see_another_projects_instance(member_user, two_projects):
    from hosts.models import Host
    from images.models import Image
    from instances.models import Flavor, Instance

    alpha, beta, _ = two_projects
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    host = Host.objects.create(name="hv", uri="test:///default", status="online")
    instances = {}
    for project in (alpha, beta):
        image = Image.objects.create(
            name=f"img-{project.name}", disk_format="qcow2", project=project, status="active"
        )
        instances[project.name] = Instance.objects.create(
            name=f"vm-{project.name}", project=project, owner=member_user, flavor=flavor,
            image=image, host=host, domain_name=f"cp-{project.name}", state="running",
        )  # fmt: skip
    client = bearer(issue_token(member_user, name="alpha only", project=alpha).secret)
    listed = client.get("/api/v1/instances/").json()["results"]
    assert [i["name"] for i in listed] == ["vm-alpha"]
    other = instances["beta"].pk
    assert client.get(f"/api/v1/instances/{other}/").status_code == 404
    assert client.post(f"/api/v1/instances/{other}/stop/").status_code == 404
    # Unscoped, alice sees both.
    unscoped = bearer(issue_token(member_user, name="all").secret)
    assert unscoped.get(f"/api/v1/instances/{other}/").status_code == 200


def test_an_admins_scoped_token_is_not_an_admins(admin_user, two_projects):
    alpha = two_projects[0]
    client = bearer(issue_token(admin_user, name="scoped", project=alpha).secret)
    assert client.get("/api/v1/hosts/").status_code == 403
    assert [p["name"] for p in client.get("/api/v1/projects/").json()["results"]] == ["alpha"]
    assert client.post("/api/v1/projects/", {"name": "x"}, format="json").status_code == 403


def test_scope_must_be_a_project_the_user_sees(member_user, two_projects):
    alpha, _, gamma = two_projects
    client = session_api(member_user)
    answers = [
        client.post("/api/v1/tokens/", {"name": "x", "project": pk}, format="json")
        for pk in (gamma.pk, 999_999)
    ]
    # Someone else's project and none at all get the same answer.
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()
    assert "No such project." in answers[0].content.decode()
    response = client.post(
        "/api/v1/tokens/", {"name": "x", "project": alpha.pk, "read_only": True}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["project"] == alpha.pk and response.json()["read_only"] is True


@pytest.mark.parametrize(
    "data",
    [
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "expires_in_days": 366},
        {"name": "x", "expires_at": "2000-01-01T00:00:00Z"},
        {"name": "x", "expires_at": "2999-01-01T00:00:00Z"},
        {"name": "x", "expires_in_days": 5, "expires_at": "2999-01-01T00:00:00Z"},
        {"name": ""},
    ],
)
def test_every_token_expires_within_a_year(admin_user, data):
    response = session_api(admin_user).post("/api/v1/tokens/", data, format="json")
    assert response.status_code == 400, response.content
    assert not ApiToken.objects.exists()


def test_expiry_can_be_chosen(member_user):
    client = session_api(member_user)
    response = client.post("/api/v1/tokens/", {"name": "x", "expires_in_days": 7}, format="json")
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert abs(token.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=5)
    at = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = client.post("/api/v1/tokens/", {"name": "y", "expires_at": at.isoformat()})
    assert ApiToken.objects.get(pk=response.json()["id"]).expires_at == at


def test_a_token_cannot_make_a_wider_token(member_user, two_projects):
    alpha, beta, _ = two_projects
    scoped = bearer(issue_token(member_user, name="alpha", project=alpha, expires_in_days=5).secret)
    assert scoped.post("/api/v1/tokens/", {"name": "all"}, format="json").status_code == 403
    # To this token alice's other project does not exist.
    response = scoped.post("/api/v1/tokens/", {"name": "b", "project": beta.pk}, format="json")
    assert response.status_code == 400 and "No such project." in response.content.decode()
    longer = {"name": "a2", "project": alpha.pk, "expires_in_days": 30}
    assert scoped.post("/api/v1/tokens/", longer, format="json").status_code == 400
    same = {"name": "a3", "project": alpha.pk, "expires_in_days": 2}
    assert scoped.post("/api/v1/tokens/", same, format="json").status_code == 201


def test_last_use_is_recorded_at_most_once_a_minute(alice_token, django_assert_num_queries):
    token = alice_token.token
    assert token.last_used_at is None
    client = bearer(alice_token.secret)
    client.get("/api/v1/tokens/")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    # Within the minute: no write (token + user in one query, then the list's own).
    with django_assert_num_queries(2):
        client.get("/api/v1/tokens/")
    token.refresh_from_db()
    assert token.last_used_at == first
    # A minute later it is written again.
    earlier = first - LAST_USED_RESOLUTION
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=earlier)
    client.get("/api/v1/tokens/")
    token.refresh_from_db()
    assert token.last_used_at > earlier
    listed = client.get("/api/v1/tokens/").json()["results"][0]
    assert listed["last_used_at"] is not None


def test_creating_and_revoking_are_audited_without_the_secret(member_user, two_projects):
    from cloudpanel.audit.models import AuditEvent

    alpha = two_projects[0]
    client = session_api(member_user)
    created = client.post("/api/v1/tokens/", {"name": "ci", "project": alpha.pk}, format="json")
    secret, pk = created.json()["token"], created.json()["id"]
    client.delete(f"/api/v1/tokens/{pk}/")
    client.delete(f"/api/v1/tokens/{pk}/")  # already revoked: no second event
    events = list(AuditEvent.objects.filter(action__startswith="token.").order_by("id"))
    assert [(e.action, e.target_id, e.user_id, e.project_id) for e in events] == [
        ("token.create", str(pk), member_user.pk, alpha.pk),
        ("token.revoke", str(pk), member_user.pk, alpha.pk),
    ]
    assert events[0].params["read_only"] is False and events[0].params["name"] == "ci"
    stored = ApiToken.objects.get(pk=pk)
    for event in events:
        dumped = str(event.params) + event.message
        assert secret not in dumped and stored.digest not in dumped
