"""Child jobs: an operation that fans out (an evacuation's migrations) runs them under its
own job. Each child is a job like any other (its own row, status, heartbeat and repair),
with `parent` set: cancelling the parent reaches it (JobContext.cancelled looks up the
chain), its progress moves the parent's, and its outcome comes back in the parent's result.
"""

from __future__ import annotations

from .models import Job
from .services import (
    JobConflict,
    JobContext,
    Ticker,
    broadcast,
    job_cancel,
    job_execute,
)


class ChildSpec:
    """One child job to run: an operation, its target and its checked parameters."""

    def __init__(self, operation, target, params: dict | None = None):
        self.operation, self.target, self.params = operation, target, params or {}


def child_outcome(job: Job) -> dict:
    """What a finished child reports up to its parent (the admin's view)."""
    return {
        "job": job.id,
        "kind": job.kind,
        "target": {"type": job.target_type, "id": job.target_id, "name": job.target_name},
        "status": job.status,
        "result": job.result,
        "error": job.error,
    }


def _follow_child(ctx: JobContext, child_id: int, base: float, span: float) -> Ticker:
    """While a child runs, its progress moves the parent's within the child's share."""

    def follow() -> None:
        child = Job.objects.filter(id=child_id).values("progress").first()
        if child:
            # The parent's handler waits on the child meanwhile: nothing else touches its
            # job row.
            parent = ctx.job
            parent.progress = int(base + span * child["progress"] / 100)
            parent.save(update_fields=["progress"])
            broadcast(parent)

    return Ticker(1.0, follow, f"job-{ctx.job.id}-children")


def run_children(
    ctx: JobContext, children: list[ChildSpec], *, start: int = 0, end: int = 100
) -> list[dict]:
    """Run child jobs one after another under this job, and return their outcomes.

    All children are created first (so the parent lists what it will do); a child whose
    target is busy with another job is reported as refused. Then each runs through the
    same runner as any job: its own status, heartbeat and repair. The parent's progress
    moves from `start` to `end` as the children advance. When the parent is cancelled, the
    running child stops at its next step (it sees its parent's cancellation), the children
    not started yet are cancelled, and the outcomes so far stay in the parent's result.
    """
    jobs, refused = [], []
    for child in children:
        try:
            jobs.append(_create_child(ctx, child))
        except JobConflict as exc:
            refused.append(_refused_outcome(child, str(exc)))
    span = (end - start) / max(len(jobs), 1)
    try:
        for index, child in enumerate(jobs):
            ctx.progress(
                start + int(span * index),
                f"Running {child.kind} on {child.target_name} ({index + 1} of {len(jobs)})",
                public=f"Step {index + 1} of {len(jobs)}",
            )
            with _follow_child(ctx, child.id, start + span * index, span):
                job_execute(child.id)
    finally:
        for child in jobs:  # after a cancellation: the children that never started
            job_cancel(job=Job.objects.get(id=child.id))
        outcomes = [
            child_outcome(job) for job in Job.objects.filter(parent=ctx.job).order_by("id")
        ] + refused
        # Kept by the runner however the parent ends (cancelled included).
        ctx.job.result = {**(ctx.job.result or {}), "children": outcomes}
    ctx.check_cancelled()
    return outcomes


def _create_child(ctx: JobContext, child: ChildSpec) -> Job:
    return child.operation.create_job(
        user=ctx.job.requested_by,
        target=child.target,
        params=child.params,
        parent=ctx.job,
        enqueue=False,  # run here, by the parent, not by a worker
    )


def _refused_outcome(child: ChildSpec, reason: str) -> dict:
    operation, target = child.operation, child.target
    return {
        "job": None,
        "kind": operation.kind,
        "target": {
            "type": operation.target_type,
            "id": target.pk,
            "name": operation.target_name(target),
        },
        "status": "refused",
        "result": {},
        "error": reason,
    }
