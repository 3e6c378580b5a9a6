"""Quotas: reading them with usage, setting them (admins), and their enforcement on every
path that takes resources: create, restore, resize (growth), snapshot and backup.

Over quota is a 4xx naming the resource, used, asked and limit, and leaves nothing
behind: no instance row, no job.
"""

from __future__ import annotations

import pytest

from cloudpanel.errors import InvalidInput, QuotaExceeded
from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Quota
from cloudpanel.projects.quotas import quota_set, quota_usage
from cloudpanel.projects.services import project_get_default
from instances.models import Backup, Instance, Snapshot, Volume
from instances.operations.backup import BACKUP, RESTORE
from instances.operations.create import CREATE
from instances.operations.resize import RESIZE
from instances.operations.snapshot import TAKE_SNAPSHOT

from .conftest import client_for, make_image

pytestmark = pytest.mark.django_db

URL = "/api/v1/projects/"


def place(project, flavor, host, name, image=None, state=Instance.State.SHUTOFF) -> Instance:
    """An instance row as a finished create leaves it (nothing on the test host needed)."""
    return Instance.objects.create(
        name=name, project=project, flavor=flavor, host=host, image=image, state=state,
        domain_name=f"cp-{name}",
    )  # fmt: skip


def test_usage_counts_the_rows(team, other, host, flavor, big_flavor, member):
    a = place(team, flavor, host, "a")
    place(team, big_flavor, host, "b", state=Instance.State.BUILDING)
    place(other, big_flavor, host, "elsewhere")
    Snapshot.objects.create(instance=a, name="s1")
    for state in (Backup.State.READY, Backup.State.CREATING, Backup.State.FAILED):
        Backup.objects.create(project=team, instance=a, instance_name="a", host=host, state=state)
    quota_set(team, instances=5, vcpus=None, ram_mib=1024)
    usage = quota_usage(team)
    assert usage == {
        "instances": {"used": 2, "limit": 5},
        "vcpus": {"used": 6, "limit": None},
        "ram_mib": {"used": 384, "limit": 1024},
        "disk_gib": {"used": 6, "limit": None},
        "snapshots": {"used": 1, "limit": None},
        "backups": {"used": 2, "limit": None},  # a failed backup holds nothing
    }


def test_no_quota_row_is_unlimited(team):
    assert not Quota.objects.filter(project=team).exists()
    assert all(v["limit"] is None for v in quota_usage(team).values())


@pytest.mark.parametrize("role", ["manager", "member", "viewer"])
def test_members_read_the_quota_and_admins_set_it(request, role, team, admin_user, host, flavor):
    place(team, flavor, host, "a")
    client = client_for(request.getfixturevalue(role))
    read = client.get(f"{URL}{team.pk}/quota/")
    assert read.status_code == 200, read.content
    assert read.json()["instances"] == {"used": 1, "limit": None}
    # Not even a manager raises their own limits.
    refused = client.put(f"{URL}{team.pk}/quota/", {"instances": 100}, format="json")
    assert refused.status_code == 403
    assert not Quota.objects.filter(project=team).exists()

    admin = client_for(admin_user)
    body = {"instances": 3, "vcpus": 8, "ram_mib": 2048, "disk_gib": 50, "snapshots": 4}
    put = admin.put(f"{URL}{team.pk}/quota/", body, format="json")
    assert put.status_code == 200, put.content
    assert put.json()["vcpus"] == {"used": 2, "limit": 8}
    assert put.json()["backups"] == {"used": 0, "limit": None}  # left out: unlimited
    assert client.get(f"{URL}{team.pk}/quota/").json()["instances"] == {"used": 1, "limit": 3}
    bad = admin.put(f"{URL}{team.pk}/quota/", {"instances": -1}, format="json")
    assert bad.status_code == 400


def test_another_projects_quota_is_404(other_manager, team):
    client = client_for(other_manager)
    assert client.get(f"{URL}{team.pk}/quota/").status_code == 404
    assert client.put(f"{URL}{team.pk}/quota/", {"instances": 9}, format="json").status_code == 404


# Enforcement


def create(member, project, flavor, image, name="vm"):
    return CREATE.start(user=member, name=name, image=image, flavor=flavor, project=project)


@pytest.mark.parametrize(
    ("limits", "resource", "message"),
    [
        ({"instances": 1}, "instances", "instances: 1 used, 1 asked, limit 1"),
        ({"vcpus": 3}, "vcpus", "vCPUs: 2 used, 2 asked, limit 3"),
        ({"ram_mib": 200}, "ram_mib", "RAM: 128 MiB used, 128 MiB asked, limit 200 MiB"),
        ({"disk_gib": 3}, "disk_gib", "disk: 2 GiB used, 2 GiB asked, limit 3 GiB"),
    ],
)
def test_create_past_a_quota_is_refused_and_leaves_nothing(
    team, member, host, flavor, image, limits, resource, message
):
    quota_set(team, **limits)
    first = create(member, team, flavor, image, "first")
    assert first.kind == "instance.create"
    with pytest.raises(QuotaExceeded) as refused:
        create(member, team, flavor, image, "second")
    assert message in str(refused.value)
    assert list(Instance.objects.values_list("name", flat=True)) == ["first"]
    assert Job.objects.count() == 1


def test_the_api_answers_4xx_with_the_reason(team, member, host, flavor, image):
    quota_set(team, instances=0)
    response = client_for(member).post(
        "/api/v1/instances/",
        {"name": "vm", "image": image.pk, "flavor": flavor.pk, "project": team.pk},
        format="json",
    )
    assert 400 <= response.status_code < 500, response.content
    assert "Quota exceeded for instances: 0 used, 1 asked, limit 0" in response.json()["detail"]
    assert Instance.objects.count() == 0 and Job.objects.count() == 0


def test_quotas_are_per_project(team, other, member, admin_user, host, flavor, image):
    quota_set(other, instances=0)
    create(member, team, flavor, image, "mine")
    with pytest.raises(QuotaExceeded):
        create(admin_user, other, flavor, image, "theirs")  # admins are held to it too
    assert list(Instance.objects.values_list("name", flat=True)) == ["mine"]


def test_resize_counts_the_growth(team, member, host, flavor, big_flavor):
    a = place(team, flavor, host, "a")
    quota_set(team, vcpus=5)  # 2 used; growing to 4 vCPUs asks 2 more: fits
    job = RESIZE.start(user=member, target=a, flavor=big_flavor)
    assert job.kind == "instance.resize"
    # The queued resize counts before it runs: a second one must not slip past.
    b = place(team, flavor, host, "b")
    quota_set(team, vcpus=7)  # used: 2 + 2 + (2 growth queued) = 6; 2 more would be 8
    with pytest.raises(QuotaExceeded, match="vCPUs: 6 used, 2 asked, limit 7"):
        RESIZE.start(user=member, target=b, flavor=big_flavor)
    assert Job.objects.filter(kind="instance.resize").count() == 1


def test_snapshots_count_taken_and_queued(team, member, host, flavor):
    a = place(team, flavor, host, "a")
    b = place(team, flavor, host, "b")
    Snapshot.objects.create(instance=a, name="old")
    quota_set(team, snapshots=2)
    TAKE_SNAPSHOT.start(user=member, target=b, name="s1")  # queued: counts as taken
    with pytest.raises(QuotaExceeded, match="snapshots: 2 used, 1 asked, limit 2"):
        TAKE_SNAPSHOT.start(user=member, target=a, name="s2")
    assert Job.objects.filter(kind="instance.snapshot_create").count() == 1


def test_backups_count_ready_creating_and_queued(team, member, host, flavor):
    a = place(team, flavor, host, "a")
    b = place(team, flavor, host, "b")
    Backup.objects.create(project=team, instance=a, instance_name="a", host=host,
                          state=Backup.State.READY)  # fmt: skip
    Backup.objects.create(project=team, instance=a, instance_name="a", host=host,
                          state=Backup.State.FAILED)  # fmt: skip
    quota_set(team, backups=2)
    BACKUP.start(user=member, target=b)
    with pytest.raises(QuotaExceeded, match="backups: 2 used, 1 asked, limit 2"):
        BACKUP.start(user=member, target=a)
    assert Job.objects.filter(kind="instance.backup").count() == 1


def test_restore_counts_as_a_create(team, member, host, flavor, image):
    a = place(team, flavor, host, "a", image=image)
    backup = Backup.objects.create(
        project=team, instance=a, instance_name="a", host=host, flavor=flavor, image=image,
        state=Backup.State.READY,
    )  # fmt: skip
    Volume.objects.create(host=host, instance=a, backup=backup, pool="default", name="a-b.qcow2",
                          role=Volume.Role.BACKUP, state=Volume.State.READY,
                          disk_target="vda")  # fmt: skip
    quota_set(team, instances=1)
    with pytest.raises(QuotaExceeded, match="instances: 1 used, 1 asked, limit 1"):
        RESTORE.start(user=member, target=backup, name="again")
    assert list(Instance.objects.values_list("name", flat=True)) == ["a"]
    assert not Job.objects.filter(kind="backup.restore").exists()
    quota_set(team, instances=2)
    job = RESTORE.start(user=member, target=backup, name="again")
    assert job.kind == "backup.restore"
    assert Instance.objects.filter(name="again", project=team).exists()


# The project of a create


def test_a_user_with_one_project_may_omit_it(team, member, host, flavor, image):
    job = CREATE.start(user=member, name="vm", image=image, flavor=flavor)
    assert Instance.objects.get(pk=job.target_id).project == team


def test_a_user_with_several_projects_must_name_one(team, other, member, host, flavor, image):
    from cloudpanel.projects.models import Membership

    Membership.objects.create(project=other, user=member, role="member")
    with pytest.raises(InvalidInput, match="project is required"):
        CREATE.start(user=member, name="vm", image=image, flavor=flavor)
    response = client_for(member).post(
        "/api/v1/instances/", {"name": "vm", "image": image.pk, "flavor": flavor.pk},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert "project is required" in str(response.json())
    assert Instance.objects.count() == 0
    job = CREATE.start(user=member, name="vm", image=image, flavor=flavor, project=other)
    assert Instance.objects.get(pk=job.target_id).project == other


def test_images_follow_the_same_rule(team, other, member, settings):
    from cloudpanel.projects.models import Membership
    from images.catalogue import new_image

    assert new_image(user=member, name="one", disk_format="qcow2").project == team
    Membership.objects.create(project=other, user=member, role="member")
    with pytest.raises(InvalidInput, match="project is required"):
        new_image(user=member, name="two", disk_format="qcow2")
    assert new_image(user=member, name="two", disk_format="qcow2", project=other).project == other


def test_the_image_api_says_project_is_required(team, other, member, tmp_path):
    import subprocess

    from cloudpanel.projects.models import Membership
    from images.models import Image

    Membership.objects.create(project=other, user=member, role="member")
    path = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    with open(path, "rb") as fh:
        response = client_for(member).post(
            "/api/v1/images/", {"name": "img", "disk_format": "qcow2", "file": fh},
            format="multipart",
        )  # fmt: skip
    assert response.status_code == 400, response.content
    assert "project is required" in str(response.json())
    assert not Image.objects.filter(name="img").exists()


def test_admins_naming_no_project_get_the_default(admin_user, host, flavor, settings):
    image = make_image(project_get_default(), settings, "adm-img")
    job = CREATE.start(user=admin_user, name="vm", image=image, flavor=flavor)
    assert Instance.objects.get(pk=job.target_id).project.name == "default"
