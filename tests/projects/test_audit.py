"""Project, member, quota and user changes are audited: who, project, target, outcome."""

from __future__ import annotations

import pytest

from cloudpanel.audit.models import AuditEvent

from .conftest import client_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/projects/"


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_member_changes_are_audited_with_their_outcome(manager, member, team, django_user_model):
    nina = django_user_model.objects.create_user("nina", password="pw-nina-12345")
    client_for(manager).post(f"{URL}{team.pk}/members/", {"user": nina.pk, "role": "viewer"},
                             format="json")  # fmt: skip
    client_for(member).delete(f"{URL}{team.pk}/members/{nina.pk}/")  # a member may not
    client_for(manager).patch(
        f"{URL}{team.pk}/members/{manager.pk}/", {"role": "viewer"}, format="json"
    )  # fmt: skip
    # (the last manager's demotion: refused)

    (added,) = events("project.member_add")
    assert (added.user, added.project, added.result) == (manager, team, "ok")
    assert (added.target_type, added.target_name, added.params) == (
        "user",
        "nina",
        {"role": "viewer"},
    )
    (removal,) = events("project.member_remove")
    assert (removal.user, removal.result, removal.target_name) == (member, "denied", "nina")
    (change,) = events("project.member_change")
    assert change.result == "failed" and "last manager" in change.message


def test_quota_and_project_changes_are_audited(admin_user, manager, team):
    client_for(manager).put(f"{URL}{team.pk}/quota/", {"instances": 50}, format="json")
    client_for(admin_user).put(f"{URL}{team.pk}/quota/", {"instances": 5}, format="json")
    client_for(admin_user).patch(f"{URL}{team.pk}/", {"description": "new"}, format="json")
    refused, done = events("project.quota_set")
    assert (refused.user, refused.result, refused.project) == (manager, "denied", team)
    assert (done.user, done.result, done.params["instances"]) == (admin_user, "ok", 5)
    (update,) = events("project.update")
    assert (update.user, update.project, update.params) == (
        admin_user,
        team,
        {"description": "new"},
    )
    made = client_for(admin_user).post(URL, {"name": "gone"}, format="json").json()
    client_for(admin_user).delete(f"{URL}{made['id']}/")
    (deleted,) = events("project.delete")
    assert (deleted.user, deleted.target_name, deleted.result) == (admin_user, "gone", "ok")


def test_user_changes_are_audited_without_the_password(admin_user, member):
    admin = client_for(admin_user)
    admin.post("/api/v1/users/", {"username": "carol", "password": "tall-Horse-battery-9"},
               format="json")  # fmt: skip
    admin.patch(f"/api/v1/users/{member.pk}/", {"password": "other-Tall-horse-7"}, format="json")
    admin.delete(f"/api/v1/users/{member.pk}/")
    (created,) = events("user.create")
    assert (created.user, created.target_name, created.result) == (admin_user, "carol", "ok")
    (updated,) = events("user.update")
    assert set(updated.params) == {"password_set"}  # that it changed, never the value
    (deactivated,) = events("user.deactivate")
    assert deactivated.target_name == "mike" and deactivated.result == "ok"
    logged = str([(e.params, e.message) for e in AuditEvent.objects.all()])
    assert "tall-Horse-battery-9" not in logged and "other-Tall-horse-7" not in logged
