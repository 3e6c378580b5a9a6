"""Project quotas: usage counted from the rows, checks made atomic by locking the project's
row inside the creating transaction.

Usage is never a counter that could drift: it is counted each time from the instances (their
flavors), snapshots and backups, plus what queued jobs will make (a snapshot or backup job
makes its row only when it runs; a resize changes the flavor only when it runs).

`quota_reserve(project, instances=1, vcpus=2, ...)` is called inside the transaction that
records what is asked for: it locks the project's row (SELECT ... FOR UPDATE), so a second
create in the same project waits for the first to commit and then counts its rows.
"""

from __future__ import annotations

from django.apps import apps
from django.db import transaction
from django.db.models import Sum

from cloudpanel.errors import QuotaExceeded

from .models import Project, Quota

RESOURCES = Quota.RESOURCES
LABELS = {
    "instances": ("instances", ""),
    "vcpus": ("vCPUs", ""),
    "ram_mib": ("RAM", " MiB"),
    "disk_gib": ("disk", " GiB"),
    "snapshots": ("snapshots", ""),
    "backups": ("backups", ""),
}

SNAPSHOT_JOB = "instance.snapshot_create"
BACKUP_JOB = "instance.backup"
RESIZE_JOB = "instance.resize"


def _model(label: str):
    # The apps that own the counted rows import this one: no import cycle.
    return apps.get_model(label)


def quota_of(project) -> Quota | None:
    return Quota.objects.filter(project_id=project.pk).first()


def _active_jobs(project, kind: str):
    Job = _model("jobs.Job")
    return Job.objects.filter(project_id=project.pk, kind=kind, status__in=Job.ACTIVE)


def _pending_resize_growth(project) -> dict[str, int]:
    """What queued resizes will add once they run (disks only grow; vCPUs, RAM may)."""
    Instance, Flavor = _model("instances.Instance"), _model("instances.Flavor")
    jobs = list(_active_jobs(project, RESIZE_JOB).values_list("target_id", "params"))
    growth = {"vcpus": 0, "ram_mib": 0, "disk_gib": 0}
    if not jobs:
        return growth
    wanted = {p.get("flavor") for _, p in jobs if isinstance(p, dict)}
    flavors = Flavor.objects.in_bulk([f for f in wanted if f is not None])
    current = dict(
        Instance.objects.filter(pk__in=[t for t, _ in jobs]).values_list("pk", "flavor_id")
    )
    olds = Flavor.objects.in_bulk(list(set(current.values())))
    for target, params in jobs:
        new = flavors.get((params or {}).get("flavor"))
        old = olds.get(current.get(target))
        if new is None or old is None:
            continue
        for field in growth:
            growth[field] += max(0, getattr(new, field) - getattr(old, field))
    return growth


def _used(project) -> dict[str, int]:
    Instance, Snapshot, Backup = (
        _model("instances.Instance"),
        _model("instances.Snapshot"),
        _model("instances.Backup"),
    )
    # Every row counts, building, in error or being deleted alike: it holds its resources
    # until delete removes the row.
    instances = Instance.objects.filter(project_id=project.pk)
    sums = instances.aggregate(
        vcpus=Sum("flavor__vcpus"), ram_mib=Sum("flavor__ram_mib"), disk_gib=Sum("flavor__disk_gib")
    )
    growth = _pending_resize_growth(project)
    backups = Backup.objects.filter(
        project_id=project.pk, state__in=[Backup.State.READY, Backup.State.CREATING]
    ).count()
    made_backup_jobs = Backup.objects.filter(project_id=project.pk, job__isnull=False).values(
        "job_id"
    )
    queued_backups = _active_jobs(project, BACKUP_JOB).exclude(id__in=made_backup_jobs).count()
    return {
        "instances": instances.count(),
        "vcpus": (sums["vcpus"] or 0) + growth["vcpus"],
        "ram_mib": (sums["ram_mib"] or 0) + growth["ram_mib"],
        "disk_gib": (sums["disk_gib"] or 0) + growth["disk_gib"],
        "snapshots": Snapshot.objects.filter(instance__project_id=project.pk).count()
        + _active_jobs(project, SNAPSHOT_JOB).count(),
        "backups": backups + queued_backups,
    }


def quota_usage(project) -> dict[str, dict]:
    """{resource: {"used": int, "limit": int | None}} for every Quota.RESOURCES entry."""
    quota = quota_of(project)
    used = _used(project)
    return {
        r: {"used": used[r], "limit": getattr(quota, r) if quota is not None else None}
        for r in RESOURCES
    }


def over_quota_message(resource: str, used: int, asked: int, limit: int) -> str:
    label, unit = LABELS[resource]
    return (
        f"Quota exceeded for {label}: {used}{unit} used, {asked}{unit} asked, limit {limit}{unit}."
    )


def quota_reserve(project, **asked: int) -> None:
    """Refuse (QuotaExceeded) unless the project has room for `asked` ({resource: amount}).

    Call it inside the transaction that records the new rows or jobs: it locks the project's
    row until that transaction ends, so concurrent requests are counted one after another.
    """
    unknown = set(asked) - set(RESOURCES)
    if unknown:
        raise ValueError(f"unknown quota resources: {sorted(unknown)}")
    asked = {r: n for r, n in asked.items() if n > 0}
    if not asked:
        return
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("quota_reserve must run inside the creating transaction")
    # The lock first, then the limits and the count: an admin's PUT or another create
    # cannot slip in between.
    Project.objects.select_for_update().filter(pk=project.pk).exists()
    quota = quota_of(project)
    if quota is None or all(getattr(quota, r) is None for r in asked):
        return
    used = _used(project)
    for resource, amount in asked.items():
        limit = getattr(quota, resource)
        if limit is not None and used[resource] + amount > limit:
            raise QuotaExceeded(over_quota_message(resource, used[resource], amount, limit))


def instance_needs(flavor) -> dict[str, int]:
    """What one more instance of `flavor` takes of the quota."""
    return {
        "instances": 1,
        "vcpus": flavor.vcpus,
        "ram_mib": flavor.ram_mib,
        "disk_gib": flavor.disk_gib,
    }


def resize_needs(old, new) -> dict[str, int]:
    """What resizing from flavor `old` to `new` adds (a shrink frees nothing here)."""
    return {f: max(0, getattr(new, f) - getattr(old, f)) for f in ("vcpus", "ram_mib", "disk_gib")}


def quota_set(project, **limits) -> Quota:
    """Set the project's limits (None: unlimited); the row is made on first use."""
    unknown = set(limits) - set(RESOURCES)
    if unknown:
        raise ValueError(f"unknown quota resources: {sorted(unknown)}")
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).exists()
        quota, _ = Quota.objects.get_or_create(project_id=project.pk)
        for resource, value in limits.items():
            setattr(quota, resource, value)
        quota.save()
    return quota
