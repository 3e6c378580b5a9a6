"""The backups API and page without a hypervisor's guests: who may see and do what, what
tenants are shown, deletion and retention (the copies live in the test driver's pool)."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership, Project
from cloudpanel.virt import storage
from instances.backups import backups_apply_retention
from instances.models import Backup, Instance, Volume

pytestmark = pytest.mark.django_db

POOL = "default-pool"  # the test driver's
URI = "test:///default"


@pytest.fixture
def instance(test_host, default_project, tiny_flavor, qcow2_image):
    # Schedulable: its snapshot gets an active 'default' pool with room.
    test_host.storage_pools = [{"name": "default", "active": True, "capacity_bytes": 100 << 30}]
    test_host.save()
    inst = Instance.objects.create(
        name="vm1",
        project=default_project,
        flavor=tiny_flavor,
        image=qcow2_image,
        host=test_host,
        state=Instance.State.RUNNING,
        domain_name="test",
    )
    return inst


def make_backup(instance, name="b1", state=Backup.State.READY) -> Backup:
    backup = Backup.objects.create(
        project=instance.project,
        instance=instance,
        instance_name=instance.name,
        flavor=instance.flavor,
        image=instance.image,
        host=instance.host,
        name=name,
        method=Backup.Method.PUSH,
        state=state,
        size_bytes=1234,
        sha256="ab" * 32,
    )
    if state == Backup.State.READY:
        vol_name = f"bk-{uuid.uuid4().hex[:8]}.qcow2"  # the test driver outlives tests
        info = storage.create_volume(URI, POOL, vol_name, 1024 * 1024)
        Volume.objects.create(
            host=instance.host, instance=instance, backup=backup, pool=POOL, name=vol_name,
            path=info.path, role=Volume.Role.BACKUP, state=Volume.State.READY,
            disk_target="vda", sha256="ab" * 32,
        )  # fmt: skip
        backup.file = vol_name
    return backup


def in_pool(name: str) -> bool:
    return storage.find_volume_by_name(URI, POOL, name) is not None


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def viewer(django_user_model, default_project):
    user = django_user_model.objects.create_user("vic", password="pw-vic-12345")
    Membership.objects.create(project=default_project, user=user, role="viewer")
    return user


@pytest.fixture
def outsider(django_user_model):
    user = django_user_model.objects.create_user("otto", password="pw-otto-12345")
    other = Project.objects.create(name="other")
    Membership.objects.create(project=other, user=user)
    return user


def test_member_lists_backs_up_and_sees_no_infrastructure(member, instance, admin_user):
    backup = make_backup(instance)
    c = client_for(member)
    rows = c.get(f"/api/v1/instances/{instance.pk}/backups/").json()
    assert [r["id"] for r in rows] == [backup.pk]
    row = rows[0]
    assert row["size_bytes"] == 1234 and row["sha256"] == "ab" * 32
    assert row["state"] == "ready" and row["method"] == "push" and row["created_at"]
    assert "host" not in row and "host_name" not in row
    assert row["disks"] == [
        {"disk": "vda", "format": "qcow2", "capacity_bytes": 0, "allocation_bytes": 0,
         "sha256": "ab" * 32}
    ]  # fmt: skip
    assert "default-pool" not in str(rows)
    admin_row = client_for(admin_user).get(f"/api/v1/backups/{backup.pk}/").json()
    assert admin_row["host_name"] == instance.host.name
    assert admin_row["disks"][0]["pool"] == POOL and admin_row["disks"][0]["path"]

    resp = c.post(f"/api/v1/instances/{instance.pk}/backups/", {"name": "nightly"}, format="json")
    assert resp.status_code == 202, resp.content
    job = Job.objects.get(pk=resp.json()["id"])
    assert (job.kind, job.target_id) == ("instance.backup", instance.pk)
    assert job.params["name"] == "nightly"
    # A tenant picks no pool (it names the host's storage).
    instance.current_job = None
    instance.save()
    Job.objects.all().delete()
    resp = c.post(f"/api/v1/instances/{instance.pk}/backups/", {"pool": "x"}, format="json")
    assert resp.status_code == 400

    resp = c.post(f"/api/v1/instances/{instance.pk}/capture/", {"name": "tpl"}, format="json")
    assert resp.status_code == 202, resp.content
    assert Job.objects.get(pk=resp.json()["id"]).kind == "instance.capture"


def test_failed_backup_error_is_for_admins(member, instance, admin_user):
    backup = make_backup(instance, state=Backup.State.FAILED)
    Backup.objects.filter(pk=backup.pk).update(error="libvirt: /var/lib/libvirt/images/x broke")
    row = client_for(member).get(f"/api/v1/backups/{backup.pk}/").json()
    assert "/var/lib" not in row["error"] and row["error"]
    assert "/var/lib" in client_for(admin_user).get(f"/api/v1/backups/{backup.pk}/").json()["error"]


def test_restore_starts_a_new_instance_of_the_project(member, instance):
    backup = make_backup(instance)
    c = client_for(member)
    resp = c.post(f"/api/v1/backups/{backup.pk}/restore/", {"name": "again"}, format="json")
    assert resp.status_code == 202, resp.content
    new = Instance.objects.get(pk=resp.json()["instance"])
    assert (new.name, new.project_id, new.state) == ("again", instance.project_id, "building")
    assert new.host_id == backup.host_id and new.flavor_id == backup.flavor_id
    job = Job.objects.get(pk=resp.json()["id"])
    assert (job.kind, job.target_type, job.target_id) == ("backup.restore", "backup", backup.pk)
    assert new.current_job_id == job.pk
    # Names are the project's: taken is refused; a tenant chooses no host.
    Job.objects.all().delete()
    resp = c.post(f"/api/v1/backups/{backup.pk}/restore/", {"name": "again"}, format="json")
    assert resp.status_code == 400
    resp = c.post(
        f"/api/v1/backups/{backup.pk}/restore/",
        {"name": "third", "host": instance.host_id},
        format="json",
    )
    assert resp.status_code == 403
    failed = make_backup(instance, name="bad", state=Backup.State.FAILED)
    resp = c.post(f"/api/v1/backups/{failed.pk}/restore/", {"name": "x"}, format="json")
    assert resp.status_code == 409


def test_viewer_looks_but_may_not_act(viewer, instance):
    backup = make_backup(instance)
    c = client_for(viewer)
    assert c.get(f"/api/v1/instances/{instance.pk}/backups/").status_code == 200
    assert c.get(f"/api/v1/backups/{backup.pk}/").status_code == 200
    assert c.post(f"/api/v1/instances/{instance.pk}/backups/", {}, format="json").status_code == 403
    resp = c.post(f"/api/v1/instances/{instance.pk}/capture/", {"name": "t"}, format="json")
    assert resp.status_code == 403
    resp = c.post(f"/api/v1/backups/{backup.pk}/restore/", {"name": "t"}, format="json")
    assert resp.status_code == 403
    assert c.delete(f"/api/v1/backups/{backup.pk}/").status_code == 403
    assert Backup.objects.filter(pk=backup.pk).exists() and in_pool(backup.file)
    assert not Job.objects.exists() and Instance.objects.count() == 1


def test_other_projects_backups_are_not_found(outsider, instance):
    backup = make_backup(instance)
    c = client_for(outsider)
    assert c.get("/api/v1/backups/").json()["results"] == []
    assert c.get(f"/api/v1/backups/{backup.pk}/").status_code == 404
    assert c.delete(f"/api/v1/backups/{backup.pk}/").status_code == 404
    resp = c.post(f"/api/v1/backups/{backup.pk}/restore/", {"name": "t"}, format="json")
    assert resp.status_code == 404
    assert c.get(f"/api/v1/instances/{instance.pk}/backups/").status_code == 404
    assert c.post(f"/api/v1/instances/{instance.pk}/backups/", {}, format="json").status_code == 404
    resp = c.post(f"/api/v1/instances/{instance.pk}/capture/", {"name": "t"}, format="json")
    assert resp.status_code == 404
    assert Backup.objects.filter(pk=backup.pk).exists() and not Job.objects.exists()


def test_delete_removes_the_copies_then_the_backup(member, instance):
    backup = make_backup(instance)
    name = backup.file
    assert in_pool(name)
    assert client_for(member).delete(f"/api/v1/backups/{backup.pk}/").status_code == 204
    assert not Backup.objects.filter(pk=backup.pk).exists()
    assert not Volume.objects.filter(name=name).exists()
    assert not in_pool(name)


def test_backup_being_made_or_restored_is_not_deleted(member, instance):
    making = make_backup(instance, state=Backup.State.CREATING)
    assert client_for(member).delete(f"/api/v1/backups/{making.pk}/").status_code == 409
    ready = make_backup(instance)
    client_for(member).post(f"/api/v1/backups/{ready.pk}/restore/", {"name": "r"}, format="json")
    assert client_for(member).delete(f"/api/v1/backups/{ready.pk}/").status_code == 409
    assert in_pool(ready.file)


def test_retention_keeps_the_newest_per_instance(instance, settings):
    from celery import current_app

    from instances import tasks

    backups = [make_backup(instance, name=f"b{i}") for i in range(4)]
    gone = make_backup(instance, name="orphan")
    Backup.objects.filter(pk=gone.pk).update(instance=None)  # its instance was deleted
    settings.BACKUP_KEEP_LAST = 0
    assert tasks.backup_retention() == 0 and Backup.objects.count() == 5
    settings.BACKUP_KEEP_LAST = 2
    assert current_app.tasks["instances.backup_retention"].run() == 2
    kept = set(Backup.objects.values_list("name", flat=True))
    assert kept == {"b2", "b3", "orphan"}
    for b in backups[:2]:
        assert not in_pool(b.file)
    assert in_pool(backups[3].file)
    assert backups_apply_retention(2) == 0


def test_page_lists_backups_and_starts_them(member, viewer, instance, client):
    backup = make_backup(instance, name="page-bk")
    client.force_login(member)
    page = client.get(f"/instances/{instance.pk}/").content.decode()
    assert "page-bk" in page and "Back up now" in page and "Capture as image" in page
    assert f"/instances/{instance.pk}/backups/{backup.pk}/restore/" in page
    resp = client.post(f"/instances/{instance.pk}/backups/", {"name": "from-page"})
    assert resp.status_code == 302
    assert Job.objects.get(kind="instance.backup").params["name"] == "from-page"
    Job.objects.all().delete()
    Instance.objects.filter(pk=instance.pk).update(current_job=None)
    resp = client.post(f"/instances/{instance.pk}/backups/{backup.pk}/restore/", {"name": "pg"})
    new = Instance.objects.get(name="pg")
    assert resp.status_code == 302 and resp["Location"] == f"/instances/{new.pk}/"
    client.force_login(viewer)
    page = client.get(f"/instances/{instance.pk}/").content.decode()
    assert "page-bk" in page and "Back up now" not in page
    client.post(f"/instances/{instance.pk}/backups/{backup.pk}/delete/")
    assert Backup.objects.filter(pk=backup.pk).exists()
