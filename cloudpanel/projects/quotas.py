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
from django.db.models import Count, Sum

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


def _active_jobs(project_ids, kind: str):
    Job = _model("jobs.Job")
    return Job.objects.filter(project_id__in=project_ids, kind=kind, status__in=Job.ACTIVE)


def _per_project(rows, key: str = "project_id") -> dict[int, int]:
    return {row[key]: row["n"] for row in rows}


def _pending_resize_growth(project_ids) -> dict[int, dict[str, int]]:
    """What queued resizes will add once they run (disks only grow; vCPUs, RAM may)."""
    Instance, Flavor = _model("instances.Instance"), _model("instances.Flavor")
    jobs = list(
        _active_jobs(project_ids, RESIZE_JOB).values_list("project_id", "target_id", "params")
    )
    growth = {pid: {"vcpus": 0, "ram_mib": 0, "disk_gib": 0} for pid in project_ids}
    if not jobs:
        return growth
    wanted = {p.get("flavor") for _, _, p in jobs if isinstance(p, dict)}
    flavors = Flavor.objects.in_bulk([f for f in wanted if f is not None])
    current = dict(
        Instance.objects.filter(pk__in=[t for _, t, _ in jobs]).values_list("pk", "flavor_id")
    )
    olds = Flavor.objects.in_bulk(list(set(current.values())))
    for project_id, target, params in jobs:
        new = flavors.get((params or {}).get("flavor") if isinstance(params, dict) else None)
        old = olds.get(current.get(target))
        if new is None or old is None:
            continue
        for field in growth[project_id]:
            growth[project_id][field] += max(0, getattr(new, field) - getattr(old, field))
    return growth


def _used_many(project_ids: list[int]) -> dict[int, dict[str, int]]:
    """Usage of each project, in a constant number of queries whatever their number."""
    Instance, Snapshot, Backup = (
        _model("instances.Instance"),
        _model("instances.Snapshot"),
        _model("instances.Backup"),
    )
    # Every row counts, building, in error or being deleted alike: it holds its resources
    # until delete removes the row.
    instances = {
        row["project_id"]: row
        for row in Instance.objects.filter(project_id__in=project_ids)
        .values("project_id")
        .annotate(
            n=Count("id"),
            vcpus=Sum("flavor__vcpus"),
            ram_mib=Sum("flavor__ram_mib"),
            disk_gib=Sum("flavor__disk_gib"),
        )
        .order_by()
    }
    snapshots = _per_project(
        Snapshot.objects.filter(instance__project_id__in=project_ids)
        .values("instance__project_id")
        .annotate(n=Count("id"))
        .order_by(),
        "instance__project_id",
    )
    queued_snapshots = _per_project(
        _active_jobs(project_ids, SNAPSHOT_JOB)
        .values("project_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    backups = _per_project(
        Backup.objects.filter(
            project_id__in=project_ids, state__in=[Backup.State.READY, Backup.State.CREATING]
        )
        .values("project_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    # A backup job makes its row when it runs: count the queued ones that have none yet.
    made = Backup.objects.filter(project_id__in=project_ids, job__isnull=False).values("job_id")
    queued_backups = _per_project(
        _active_jobs(project_ids, BACKUP_JOB)
        .exclude(id__in=made)
        .values("project_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    growth = _pending_resize_growth(project_ids)
    used = {}
    for pid in project_ids:
        row = instances.get(pid, {})
        used[pid] = {
            "instances": row.get("n", 0),
            "vcpus": (row.get("vcpus") or 0) + growth[pid]["vcpus"],
            "ram_mib": (row.get("ram_mib") or 0) + growth[pid]["ram_mib"],
            "disk_gib": (row.get("disk_gib") or 0) + growth[pid]["disk_gib"],
            "snapshots": snapshots.get(pid, 0) + queued_snapshots.get(pid, 0),
            "backups": backups.get(pid, 0) + queued_backups.get(pid, 0),
        }
    return used


def _used(project) -> dict[str, int]:
    return _used_many([project.pk])[project.pk]


def quota_usage(project) -> dict[str, dict]:
    """{resource: {"used": int, "limit": int | None}} for every Quota.RESOURCES entry."""
    return quota_usage_many([project])[project.pk]


def quota_usage_many(projects) -> dict[int, dict[str, dict]]:
    """quota_usage of several projects at once ({project id: usage}), for lists."""
    ids = [p.pk for p in projects]
    quotas = {q.project_id: q for q in Quota.objects.filter(project_id__in=ids)}
    used = _used_many(ids)
    return {
        pid: {
            r: {"used": used[pid][r], "limit": getattr(quotas.get(pid), r, None)} for r in RESOURCES
        }
        for pid in ids
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
