"""/api/v1/projects/, its members and /api/v1/users/, with each role."""

from __future__ import annotations

import pytest

from cloudpanel.projects.models import Membership, Project

from .conftest import client_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/projects/"


def names(response) -> list[str]:
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return [row["name"] for row in rows]


# Projects


def test_anonymous_is_refused(team):
    response = client_for(None).get(URL)
    assert response.status_code in (401, 403)
    assert "team" not in response.content.decode()


def test_admin_creates_updates_and_deletes_projects(admin_user):
    admin = client_for(admin_user)
    created = admin.post(URL, {"name": "newco", "description": "d"}, format="json")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    changed = admin.patch(f"{URL}{pk}/", {"description": "e"}, format="json")
    assert changed.status_code == 200 and changed.json()["description"] == "e"
    assert admin.post(URL, {"name": "bad name!"}, format="json").status_code == 400
    assert admin.delete(f"{URL}{pk}/").status_code == 204
    assert not Project.objects.filter(pk=pk).exists()


def test_a_project_with_instances_is_not_deleted(admin_user, team, image):
    # The image belongs to team (PROTECT): 409 with the reason, not a 500.
    response = client_for(admin_user).delete(f"{URL}{team.pk}/")
    assert response.status_code == 409
    assert Project.objects.filter(pk=team.pk).exists()


@pytest.mark.parametrize("role", ["manager", "member", "viewer"])
def test_tenants_read_their_own_projects_only(request, role, team, other):
    client = client_for(request.getfixturevalue(role))
    assert names(client.get(URL)) == ["team"]
    assert client.get(f"{URL}{team.pk}/").status_code == 200
    assert client.get(f"{URL}{other.pk}/").status_code == 404
    # Writes on projects are for admins, managers included.
    assert client.post(URL, {"name": "mine"}, format="json").status_code == 403
    assert client.patch(f"{URL}{team.pk}/", {"description": "x"}, format="json").status_code == 403
    assert client.delete(f"{URL}{team.pk}/").status_code == 403
    assert Project.objects.filter(name="mine").count() == 0


def test_admin_sees_every_project(admin_user, team, other):
    assert names(client_for(admin_user).get(URL)) == ["other", "team"]


# Members


def members_of(client, project):
    response = client.get(f"{URL}{project.pk}/members/")
    assert response.status_code == 200, response.content
    return {row["username"]: row["role"] for row in response.json()}


@pytest.mark.parametrize("role", ["manager", "member", "viewer"])
def test_members_list_their_projects_members(request, role, team, manager, member, viewer):
    client = client_for(request.getfixturevalue(role))
    assert members_of(client, team) == {"mona": "manager", "mike": "member", "vera": "viewer"}


def test_a_manager_adds_changes_and_removes_members(manager, team, django_user_model):
    newbie = django_user_model.objects.create_user("nina", password="pw-nina-12345")
    client = client_for(manager)
    added = client.post(
        f"{URL}{team.pk}/members/", {"user": newbie.pk, "role": "viewer"}, format="json"
    )
    assert added.status_code == 201, added.content
    assert added.json() == {"user": newbie.pk, "username": "nina", "role": "viewer"}
    again = client.post(f"{URL}{team.pk}/members/", {"user": newbie.pk}, format="json")
    assert again.status_code == 409
    changed = client.patch(
        f"{URL}{team.pk}/members/{newbie.pk}/", {"role": "member"}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["role"] == "member"
    assert Membership.objects.get(project=team, user=newbie).role == "member"
    bad = client.put(f"{URL}{team.pk}/members/{newbie.pk}/", {"role": "owner"}, format="json")
    assert bad.status_code == 400
    assert client.delete(f"{URL}{team.pk}/members/{newbie.pk}/").status_code == 204
    assert not Membership.objects.filter(project=team, user=newbie).exists()
    assert client.delete(f"{URL}{team.pk}/members/{newbie.pk}/").status_code == 404


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_do_not_manage_members(request, role, team, manager, django_user_model):
    newbie = django_user_model.objects.create_user("nina", password="pw-nina-12345")
    client = client_for(request.getfixturevalue(role))
    add = client.post(f"{URL}{team.pk}/members/", {"user": newbie.pk}, format="json")
    assert add.status_code == 403
    change = client.patch(
        f"{URL}{team.pk}/members/{manager.pk}/", {"role": "viewer"}, format="json"
    )
    assert change.status_code == 403
    assert client.delete(f"{URL}{team.pk}/members/{manager.pk}/").status_code == 403
    assert members_of(client_for(manager), team)["mona"] == "manager"
    assert not Membership.objects.filter(user=newbie).exists()


def test_another_projects_manager_gets_404(other_manager, team, manager, member):
    client = client_for(other_manager)
    assert client.get(f"{URL}{team.pk}/members/").status_code == 404
    add = client.post(f"{URL}{team.pk}/members/", {"user": other_manager.pk}, format="json")
    assert add.status_code == 404
    assert client.delete(f"{URL}{team.pk}/members/{member.pk}/").status_code == 404
    assert not Membership.objects.filter(project=team, user=other_manager).exists()


def test_a_read_only_token_of_a_manager_manages_nothing(manager, team, member):
    from cloudpanel.accounts.models import ApiToken

    manager.api_token = ApiToken(user=manager, name="ro", prefix="ro", digest="0", read_only=True)
    client = client_for(manager)
    change = client.patch(f"{URL}{team.pk}/members/{member.pk}/", {"role": "viewer"}, format="json")
    assert change.status_code == 403
    assert Membership.objects.get(project=team, user=member).role == "member"


def test_the_last_manager_stays_unless_an_admin_says_so(manager, team, admin_user):
    client = client_for(manager)
    demote = client.patch(
        f"{URL}{team.pk}/members/{manager.pk}/", {"role": "member"}, format="json"
    )
    assert demote.status_code == 409
    assert "last manager" in demote.json()["detail"]
    assert client.delete(f"{URL}{team.pk}/members/{manager.pk}/").status_code == 409
    assert Membership.objects.get(project=team, user=manager).role == "manager"
    # An admin may leave the project without a manager (admins manage it still).
    admin = client_for(admin_user)
    assert admin.delete(f"{URL}{team.pk}/members/{manager.pk}/").status_code == 204
    assert not Membership.objects.filter(project=team).exists()


def test_a_manager_steps_down_once_another_manages(manager, member, team):
    client = client_for(manager)
    promote = client.patch(
        f"{URL}{team.pk}/members/{member.pk}/", {"role": "manager"}, format="json"
    )
    assert promote.status_code == 200
    assert client.delete(f"{URL}{team.pk}/members/{manager.pk}/").status_code == 204
    assert members_of(client_for(member), team) == {"mike": "manager"}


def test_admin_adds_members_to_any_project(admin_user, other, member):
    response = client_for(admin_user).post(
        f"{URL}{other.pk}/members/", {"user": member.pk, "role": "manager"}, format="json"
    )
    assert response.status_code == 201
    assert Membership.objects.get(project=other, user=member).role == "manager"


# Users


USERS = "/api/v1/users/"


def test_users_are_for_admins(admin_user, manager, member, viewer):
    admin = client_for(admin_user)
    listed = admin.get(USERS)
    assert listed.status_code == 200
    body = listed.json()
    rows = body["results"] if isinstance(body, dict) else body
    mona = next(r for r in rows if r["username"] == "mona")
    assert mona["projects"] == [{"project": mona["projects"][0]["project"], "name": "team",
                                 "role": "manager"}]  # fmt: skip
    assert "password" not in listed.content.decode()
    assert "md5$" not in listed.content.decode()
    for tenant in (manager, member, viewer):
        client = client_for(tenant)
        assert client.get(USERS).status_code == 403
        assert client.get(f"{USERS}{tenant.pk}/").status_code == 403
        made = client.post(USERS, {"username": "x", "password": "a-Long-pass-42"}, format="json")
        assert made.status_code == 403


def test_admin_creates_a_user_with_a_validated_password(admin_user, django_user_model):
    admin = client_for(admin_user)
    weak = admin.post(USERS, {"username": "weak", "password": "123"}, format="json")
    assert weak.status_code == 400
    assert "password" in str(weak.json())
    assert not django_user_model.objects.filter(username="weak").exists()
    made = admin.post(
        USERS, {"username": "carol", "password": "tall-Horse-battery-9", "email": "c@x.org"},
        format="json",
    )  # fmt: skip
    assert made.status_code == 201, made.content
    assert "password" not in made.json()
    carol = django_user_model.objects.get(username="carol")
    assert carol.check_password("tall-Horse-battery-9") and not carol.is_staff


def test_admin_updates_and_deactivates_a_user(admin_user, member):
    admin = client_for(admin_user)
    changed = admin.patch(f"{USERS}{member.pk}/", {"email": "m@x.org"}, format="json")
    assert changed.status_code == 200 and changed.json()["email"] == "m@x.org"
    assert admin.delete(f"{USERS}{member.pk}/").status_code == 204
    member.refresh_from_db()
    assert member.is_active is False  # kept, but signs in no more
    assert admin.delete(f"{USERS}{admin_user.pk}/").status_code == 409


@pytest.mark.parametrize("user_id", ["-5", "abc", "99999999999999999999999", "0"])
def test_a_member_id_that_is_not_one_is_the_apis_404(admin_user, team, user_id):
    response = client_for(admin_user).patch(
        f"{URL}{team.pk}/members/{user_id}/", {"role": "member"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
