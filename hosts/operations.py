"""Host evacuation: empty a host (for maintenance) by moving its instances elsewhere.

One parent job ("host.evacuate") whose children are the instances' own migrations (live for
running instances, cold for shut-off ones when asked), run one after another under it with
cloudpanel.jobs.children. Each instance is asked of its migration's own check first: one
that cannot move is listed with the reason and keeps running where it is.

hosts imports no instances module: the migrations are found by their job kind in the
operations registry, and the instances through the host's reverse relation.
"""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar

from cloudpanel.errors import Conflict, DomainError, PermissionDenied, page_message
from cloudpanel.jobs import registry
from cloudpanel.jobs.children import ChildSpec, run_children
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import Operation, register
from cloudpanel.jobs.services import JobContext, JobFailed, job_cancel
from cloudpanel.projects import access

from .models import Host
from .selectors import GIB, MIB, host_capacity, host_list_with_allocation
from .services import host_set_maintenance

LIVE_KIND = "instance.migrate"
COLD_KIND = "instance.cold-migrate"
RUNNING, SHUTOFF = "running", "shutoff"


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class Evacuate(Operation):
    kind: ClassVar[str] = "host.evacuate"
    target_type: ClassVar[str] = Job.TargetType.HOST

    def target_name(self, target: Host) -> str:
        return target.name

    def target_project(self, target: Host):
        return None  # host jobs are for admins only

    def check(self, *, user, target: Host, include_shutoff=False) -> dict:
        if not access.is_admin(user):
            raise PermissionDenied("Only administrators can evacuate a host.")
        if target.status != Host.Status.ONLINE:
            why = f": {target.last_error}" if target.last_error else ""
            raise Conflict(
                f"Host {target.name} is {target.status}{why}; an evacuation moves running "
                "instances off a host that answers (a lost host's instances are rebuilt)."
            )
        return {"include_shutoff": _flag(include_shutoff)}

    def run(self, job: Job, ctx: JobContext) -> dict:
        host = Host.objects.filter(pk=job.target_id).first()
        if host is None:
            raise JobFailed(f"Host {job.target_name or job.target_id} no longer exists")
        include_shutoff = bool(job.params.get("include_shutoff"))
        result: dict = {"host": host.name, "include_shutoff": include_shutoff}
        if host.maintenance:
            result["maintenance"] = f"host {host.name} was in maintenance already"
        else:
            host_set_maintenance(host=host, maintenance=True)
            result["maintenance"] = (
                f"host {host.name} put in maintenance by this evacuation (no new placements); "
                "take it out of maintenance when done"
            )
        ctx.progress(2, result["maintenance"])
        specs, planned = self._plan(job, ctx, host, include_shutoff)
        moving = [p for p in planned if p["action"] != "stay"]
        result["planned"] = planned
        result["moving"] = len(moving)
        result["staying"] = len(planned) - len(moving)
        # Kept in the result however the job ends: the children's outcomes join it.
        ctx.job.result = dict(result)
        ctx.progress(
            5,
            f"{len(moving)} instance(s) to move, {result['staying']} staying on {host.name}",
        )
        outcomes = run_children(ctx, specs, start=5, end=100) if specs else []
        result["children"] = outcomes
        result["instances"] = self.per_instance(planned, outcomes)
        moved = sum(1 for r in result["instances"] if r["status"] == Job.Status.SUCCEEDED)
        result["moved"] = moved
        ctx.job.result = dict(result)
        ctx.progress(100, f"Moved {moved} of {len(planned)} instance(s) off {host.name}")
        return result

    def on_abandoned(self, job: Job) -> None:
        """The parent died (worker lost) or was cancelled before it ran: its children that
        never started are cancelled (they were made for this parent to run)."""
        for child in Job.objects.filter(parent=job, status=Job.Status.PENDING):
            job_cancel(job=child)

    # --- the plan ----------------------------------------------------------------------

    def _plan(self, job: Job, ctx: JobContext, host: Host, include_shutoff: bool):
        """Which instance moves how and where; the others with the reason they stay."""
        user = job.requested_by
        specs: list[ChildSpec] = []
        planned: list[dict] = []
        # What this plan already sends to each host: the checks see only the database.
        taken: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for instance in host.instances.select_related("flavor", "host").order_by("name", "id"):
            row = {"instance": instance.pk, "name": instance.name, "state": instance.state}
            kind = self._kind_for(instance.state, include_shutoff)
            if kind is None:
                why = (
                    "shut off (include_shutoff was not asked)"
                    if instance.state == SHUTOFF
                    else f"{instance.state}: only running (and, if asked, shut-off) "
                    "instances are moved"
                )
                planned.append({**row, "action": "stay", "reason": why})
                continue
            try:
                operation = registry.get(kind)
            except registry.UnknownOperation:
                planned.append({**row, "action": "stay", "reason": f"{kind} is not available"})
                continue
            try:
                params = self._checked(operation, user, instance, taken)
            except DomainError as exc:
                planned.append({**row, "action": "stay", "reason": page_message(exc)})
                continue
            target_id = params.get("host")
            target_name = Host.objects.filter(pk=target_id).values_list("name", flat=True).first()
            if target_id is not None:
                need = self._need(instance)
                for i in range(3):
                    taken[target_id][i] += need[i]
            action = "live-migrate" if kind == LIVE_KIND else "cold-migrate"
            planned.append({**row, "action": action, "to": target_name, "to_host": target_id})
            specs.append(ChildSpec(operation, instance, params))
        ctx.log(f"plan: {planned}")
        return specs, planned

    @staticmethod
    def _kind_for(state: str, include_shutoff: bool) -> str | None:
        if state == RUNNING:
            return LIVE_KIND
        if state == SHUTOFF and include_shutoff:
            return COLD_KIND
        return None

    @staticmethod
    def _need(instance) -> tuple[float, float, float]:
        flavor = instance.flavor
        return (flavor.vcpus, flavor.ram_mib * MIB, flavor.disk_gib * GIB)

    def _checked(self, operation, user, instance, taken) -> dict:
        """The child's own check; where the target it chose is already filled by this plan,
        the other hosts, each through the same check."""
        params = operation.check(user=user, target=instance)
        target_id = params.get("host")
        if target_id is None or self._room(target_id, instance, taken):
            return params
        others = Host.objects.exclude(pk__in=[instance.host_id, target_id]).order_by("name").all()
        reasons = []
        for other in others:
            if not self._room(other.pk, instance, taken):
                reasons.append(f"host {other.name} is filled by this evacuation's other moves")
                continue
            try:
                return operation.check(user=user, target=instance, host=other)
            except DomainError as exc:
                reasons.append(page_message(exc))
        raise Conflict(
            f"No host has room for instance {instance.name} once the others have moved: "
            + "; ".join(reasons or ["there is no other host"])
        )

    def _room(self, host_id: int, instance, taken) -> bool:
        host = host_list_with_allocation().filter(pk=host_id).first()
        if host is None:
            return False
        cap = host_capacity(host)
        need = self._need(instance)
        return all(
            res.free - taken[host_id][i] >= need[i]
            for i, res in enumerate((cap.vcpus, cap.ram, cap.disk))
        )

    @staticmethod
    def per_instance(planned: list[dict], outcomes: list[dict]) -> list[dict]:
        """One line per instance: moved, failed, cancelled, refused, or stayed (and why)."""
        by_instance = {o["target"]["id"]: o for o in outcomes}
        lines = []
        for row in planned:
            line = {k: row.get(k) for k in ("instance", "name", "state", "action", "to")}
            if row["action"] == "stay":
                line.update(status="stayed", reason=row["reason"], job=None)
            else:
                outcome = by_instance.get(row["instance"], {})
                line.update(
                    status=outcome.get("status", "not run"),
                    reason=outcome.get("error", ""),
                    job=outcome.get("job"),
                )
            lines.append(line)
        return lines


EVACUATE = register(Evacuate())
