"""The matrix's world: projects A and B with real rows of every kind, users of each role.

Names carry markers ("zz-a-", "zz-b-", "zzkey-<owner>") so that any response body can be
searched for what its reader must not see.
"""

from __future__ import annotations

from rest_framework.test import APIClient

from cloudpanel.audit.models import AuditEvent
from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership, Project
from images.models import Image
from instances.models import Backup, DiskMirror, Flavor, Instance, KeyPair, Snapshot, Volume

# Every role the matrix walks; "other" is a manager of project B looking at A's objects.
# On API routes two personal tokens too: "ro", A's manager's read-only token (reads as the
# manager, every write 403), and "scoped", an admin's token scoped to project B (never an
# admin's: as B's manager).
ROLES = ("anon", "viewer", "member", "manager", "other", "admin")
TOKEN_ROLES = ("ro", "scoped")
TENANTS = ("viewer", "member", "manager", "other")
IN_A = ("viewer", "member", "manager")
MISSING_ID = 987654

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb1YwqPzQ0vDUOi9pLjF0ubQqS5rJCvzbGvMdEFcyB0 {}"


def _project_rows(tag: str, project, host, flavor, owner) -> dict:
    image = Image.objects.create(
        name=f"zz-{tag}-image", disk_format=Image.Format.QCOW2, project=project, owner=owner,
        visibility=Image.Visibility.PROJECT, status=Image.Status.ACTIVE, file_size=1 << 20,
        virtual_size=1 << 30,
    )  # fmt: skip
    instance = Instance.objects.create(
        name=f"zz-{tag}-vm", project=project, owner=owner, flavor=flavor, image=image,
        host=host, domain_name="test" if tag == "a" else "", state=Instance.State.RUNNING,
    )  # fmt: skip
    volume = Volume.objects.create(
        host=host, instance=instance, pool="default", name=f"zz-{tag}-disk0.qcow2",
        path=f"/var/lib/libvirt/images/zz-{tag}-disk0.qcow2", role="root",
        state=Volume.State.READY,
        disk_target="vda",
    )  # fmt: skip
    snapshot = Snapshot.objects.create(instance=instance, name=f"zz-{tag}-snap", created_by=owner)
    backup = Backup.objects.create(
        project=project, instance=instance, instance_name=instance.name, flavor=flavor,
        image=image, host=host, name=f"zz-{tag}-backup", state=Backup.State.READY,
        created_by=owner,
    )  # fmt: skip
    # Done, so that the instance is not busy: allowed writes get as far as their job.
    job = Job.objects.create(
        kind="instance.start", target_type="instance", target_id=instance.pk,
        target_name=instance.name, project=project, requested_by=owner,
        status=Job.Status.SUCCEEDED, step=f"zz-{tag}-step", public_step=f"zz-{tag}-step",
    )  # fmt: skip
    mirror = DiskMirror.objects.create(
        instance=instance, disk_target="vda", state=DiskMirror.State.MIRRORED
    )
    return {
        "project": project, "image": image, "instance": instance, "volume": volume,
        "snapshot": snapshot, "backup": backup, "job": job, "mirror": mirror,
    }  # fmt: skip


def build_world(django_user_model, host) -> dict:
    """Projects A and B, each with an image, an instance on `host`, a snapshot, a backup,
    a job and a disk mirror; users of each role in A, a manager of B, an admin."""
    users = {
        role: django_user_model.objects.create_user(f"{role}-user", password=f"pw-{role}-1")
        for role in ("viewer", "member", "manager", "other")
    }
    users["admin"] = django_user_model.objects.create_user(
        "admin-user", password="pw-admin-1", is_staff=True, is_superuser=True
    )
    a = Project.objects.create(name="zz-a-proj")
    b = Project.objects.create(name="zz-b-proj")
    for role in IN_A:
        Membership.objects.create(project=a, user=users[role], role=role)
    Membership.objects.create(project=b, user=users["other"], role=Membership.Role.MANAGER)
    # test:///default's pool, so that the scheduler finds room (creates get their job).
    type(host).objects.filter(pk=host.pk).update(default_pool="default-pool")
    host.refresh_from_db()
    flavor = Flavor.objects.create(name="mx-tiny", vcpus=1, ram_mib=64, disk_gib=1)
    bigger = Flavor.objects.create(name="mx-small", vcpus=1, ram_mib=128, disk_gib=2)
    world = {
        "users": users, "host": host, "flavor": flavor, "bigger": bigger,
        "a": _project_rows("a", a, host, flavor, users["member"]),
        "b": _project_rows("b", b, host, flavor, users["other"]),
    }  # fmt: skip
    world["spare"] = django_user_model.objects.create_user("spare-user", password="pw-spare-1")
    for tag, project in (("a", a), ("b", b)):
        world[tag]["audit"] = AuditEvent.objects.create(
            user=users["member" if tag == "a" else "other"], project=project,
            action="instance.start", target_type="instance",
            target_id=str(world[tag]["instance"].pk), target_name=f"zz-{tag}-vm",
        )  # fmt: skip
    from cloudpanel.accounts.tokens import issue_token

    world["tokens"] = {"member": issue_token(users["member"], name="zzkey-member-tok").token}
    world["secrets"] = {
        "ro": issue_token(users["manager"], name="mx-ro", read_only=True).secret,
        "scoped": issue_token(users["admin"], name="mx-scoped", project=b).secret,
    }
    world["keypairs"] = {
        role: KeyPair.objects.create(
            owner=users[role],
            name=f"zzkey-{role}",
            public_key=SSH_KEY.format(role),
            fingerprint=f"SHA256:{role}",
        )  # fmt: skip
        for role in ("member", "other")
    }
    return world


_shared_handler = None


def api_client(world, role) -> APIClient:
    """A signed-in session client of the role (one per world and role). Clients share one
    request handler: building the middleware chain (the static files index) is slow."""
    global _shared_handler
    clients = world.setdefault("clients", {})
    if role not in clients:
        client = APIClient()
        if _shared_handler is None:
            _shared_handler = client.handler
        client.handler = _shared_handler
        if role in TOKEN_ROLES:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {world['secrets'][role]}")
        elif role != "anon":
            client.force_login(world["users"][role])
        clients[role] = client
    return clients[role]


def foreign_markers(world, role) -> list[str]:
    """Texts the role must never read: the other project's names, other users' keys."""
    if role in ("anon", "admin"):
        return []
    project_marker = "zz-a-" if role in ("other", "scoped") else "zz-b-"
    keys = [f"zzkey-{owner}" for owner in world["keypairs"] if owner != role]
    return [project_marker, *keys]
