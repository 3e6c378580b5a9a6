"""The admin console's project pages: list, members (add, change, remove), quota form."""

from __future__ import annotations

import pytest

from cloudpanel.projects.models import Membership, Project, Quota
from instances.models import Instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, admin_user):
    client.force_login(admin_user)
    return client


def test_tenants_do_not_get_the_pages(client, manager, team):
    client.force_login(manager)
    for url in ("/projects/", f"/projects/{team.pk}/"):
        response = client.get(url)
        assert response.status_code == 403  # a console page: not for tenants, even managers
        assert (
            b'data-quota="instances"' not in response.content and b"Members" not in response.content
        )
    client.post(f"/projects/{team.pk}/quota/", {"instances": "99"})
    assert not Quota.objects.filter(project=team).exists()


def test_the_list_shows_projects_with_usage_and_creates_one(console, team, manager, host, flavor):
    Instance.objects.create(name="a", project=team, flavor=flavor, host=host, domain_name="cp-a")
    Quota.objects.create(project=team, instances=4)
    page = console.get("/projects/").content.decode()
    assert "team" in page and 'data-quota="instances"' in page
    assert "1 / 4" in page  # one instance of four
    made = console.post("/projects/", {"name": "fresh", "description": ""})
    fresh = Project.objects.get(name="fresh")
    assert made.status_code == 302 and made["Location"] == f"/projects/{fresh.pk}/"


def test_members_are_added_changed_and_removed(console, team, manager, django_user_model):
    nina = django_user_model.objects.create_user("nina", password="pw-nina-12345")
    page = console.get(f"/projects/{team.pk}/").content.decode()
    assert 'data-member="mona"' in page and "nina" in page  # nina is offered in the add form
    console.post(f"/projects/{team.pk}/members/add/", {"user": nina.pk, "role": "viewer"})
    assert Membership.objects.get(project=team, user=nina).role == "viewer"
    console.post(f"/projects/{team.pk}/members/{nina.pk}/role/", {"role": "member"})
    assert Membership.objects.get(project=team, user=nina).role == "member"
    bad = console.post(
        f"/projects/{team.pk}/members/{nina.pk}/role/", {"role": "owner"}, follow=True
    )
    assert "Choose one of" in bad.content.decode()
    console.post(f"/projects/{team.pk}/members/{nina.pk}/remove/")
    assert not Membership.objects.filter(project=team, user=nina).exists()


def test_the_quota_form_sets_limits_and_shows_bars(console, team):
    response = console.post(
        f"/projects/{team.pk}/quota/",
        {"instances": "2", "vcpus": "", "ram_mib": "1024", "disk_gib": "", "snapshots": "0",
         "backups": ""},
        follow=True,
    )  # fmt: skip
    assert "Quota saved." in response.content.decode()
    quota = Quota.objects.get(project=team)
    assert (quota.instances, quota.vcpus, quota.ram_mib, quota.snapshots) == (2, None, 1024, 0)
    page = response.content.decode()
    assert "0 / 2" in page and "unlimited" in page
    refused = console.post(f"/projects/{team.pk}/quota/", {"instances": "-3"}, follow=True)
    assert "Quota not saved" in refused.content.decode()
    assert Quota.objects.get(project=team).instances == 2


def test_the_list_costs_the_same_queries_for_more_projects(console, host, flavor):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert console.get("/projects/").status_code == 200
        return len(captured)

    for i in range(2):
        project = Project.objects.create(name=f"p{i}")
        Instance.objects.create(name="a", project=project, flavor=flavor, host=host,
                                domain_name=f"cp-p{i}")  # fmt: skip
    few = queries()
    for i in range(2, 12):
        project = Project.objects.create(name=f"p{i}")
        Quota.objects.create(project=project, instances=3)
        Instance.objects.create(name="a", project=project, flavor=flavor, host=host,
                                domain_name=f"cp-p{i}")  # fmt: skip
    assert queries() == few
