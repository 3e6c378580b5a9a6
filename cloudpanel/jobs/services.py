"""Jobs: create (one active exclusive job per target), run, report, cancel, reap.

Every job kind is an Operation (operations.py) registered under it (registry.py): the
runner calls its `run(job, ctx)` and, for a job that ended without `run` finishing, its
`on_abandoned(job)`. The runner owns the job's status on every path (success, error,
cancellation, time limit), so operations only do the work and report through `ctx`.

What a job reports is for admins by default: steps, log lines and errors name hosts, pools,
paths and carry libvirt's own messages. Text a tenant may read is marked public
(`ctx.progress(.., public=True or "tenant text")`, `ctx.log(.., public=True)`,
`JobFailed(.., public=True)`) and kept in the job's public_* fields; the access layer
(cloudpanel.projects.access) decides who reads which.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from cloudpanel.audit.jobs import record_job_cancel, record_job_end
from cloudpanel.errors import Conflict
from cloudpanel.projects.access import GENERIC_JOB_FAILURE

from . import registry
from .models import Job
from .signals import job_changed

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
CANCELLED = "Cancelled on request"
TIMED_OUT = "Timed out: the job ran past its time limit"
STALE_AFTER = timedelta(seconds=60)


class JobConflict(Conflict):
    """Another job is already changing this target."""

    def __init__(self, running: Job):
        self.running = running
        super().__init__(
            f"{running.target_type} {running.target_name or running.target_id} is busy with "
            f"job {running.id} ({running.kind}, {running.status})"
        )


class JobCancelled(Exception):
    pass


class JobFailed(Exception):
    """A handler's way to fail the job with a message meant for a person.

    `public`: True when the message is fit for tenants as is, a string to tell tenants
    instead; by default tenants get a generic failure message.
    """

    def __init__(self, message: str = "", *, public: bool | str = False):
        super().__init__(message)
        self.public_message = _public_text(message, public)


def _public_text(text: str, public: bool | str) -> str:
    if public is True:
        return text
    return public or ""


def broadcast(job: Job) -> None:
    """Tell whoever listens (the sockets, see events.py) that the job changed."""
    job_changed.send(sender=Job, job=job)


def job_create(
    *,
    kind: str,
    target_type: str,
    target_id: int | None,
    target_name: str = "",
    project=None,
    user=None,
    params: dict | None = None,
    exclusive: bool = True,
    enqueue: bool = True,
    parent: Job | None = None,
) -> Job:
    """Create a pending job and enqueue it when the surrounding transaction commits.

    Raises JobConflict when an exclusive job is already pending or running on the target;
    the database constraint makes that check race-free.
    """
    registry.get(kind)  # an unknown kind is a bug: fail before any row is written
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                target_type=target_type,
                target_id=target_id,
                target_name=target_name,
                project=project,
                requested_by=user if user is not None and user.is_authenticated else None,
                params=params or {},
                exclusive=exclusive,
                parent=parent,
                # Known before enqueueing, so the enqueue needs no second write.
                celery_task_id=str(uuid.uuid4()),
            )
    except IntegrityError:
        running = job_active_for(target_type=target_type, target_id=target_id)
        if running is None:
            raise
        raise JobConflict(running) from None
    if enqueue:
        transaction.on_commit(lambda: job_enqueue(job))
    return job


def job_active_for(*, target_type: str, target_id: int | None) -> Job | None:
    return (
        Job.objects.filter(
            target_type=target_type, target_id=target_id, exclusive=True, status__in=Job.ACTIVE
        )
        .order_by("created_at")
        .first()
    )


def job_enqueue(job: Job) -> None:
    from .tasks import run_job

    run_job.apply_async(args=[job.id], task_id=job.celery_task_id or None)


class JobContext:
    """What a handler uses to report progress and notice cancellation."""

    def __init__(self, job: Job):
        self.job = job

    def progress(self, percent: int, step: str | None = None, *, public: bool | str = False):
        """Report progress. The step is admin-only unless `public` is True (the step is fit
        for tenants) or a string (what tenants see instead); an admin-only step leaves the
        tenants' step as it was."""
        self.check_cancelled()
        self.job.progress = max(0, min(100, int(percent)))
        fields = ["progress", "heartbeat_at"]
        if step is not None:
            self.job.step = step[:255]
            self.job.log += f"{timezone.now():%H:%M:%S} {step}\n"
            fields += ["step", "log"]
            shown = _public_text(step, public)
            if shown:
                self.job.public_step = shown[:255]
                self.job.public_log += f"{timezone.now():%H:%M:%S} {shown}\n"
                fields += ["public_step", "public_log"]
        self.job.heartbeat_at = timezone.now()
        self.job.save(update_fields=fields)
        broadcast(self.job)

    def log(self, line: str, *, public: bool | str = False) -> None:
        """Add a log line: admin-only unless `public` (True, or the tenants' version)."""
        now = f"{timezone.now():%H:%M:%S}"
        self.job.log += f"{now} {line}\n"
        fields = ["log"]
        shown = _public_text(line, public)
        if shown:
            self.job.public_log += f"{now} {shown}\n"
            fields.append("public_log")
        self.job.save(update_fields=fields)

    def cancelled(self) -> bool:
        """Cancellation was asked of this job or of a job it runs under."""
        ids = [self.job.id, *self._ancestor_ids()]
        return Job.objects.filter(id__in=ids, cancel_requested=True).exists()

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled()

    def _ancestor_ids(self) -> list[int]:
        if not hasattr(self, "_ancestors"):
            ids, parent_id = [], self.job.parent_id
            while parent_id is not None and parent_id not in ids:
                ids.append(parent_id)
                parent_id = (
                    Job.objects.filter(id=parent_id).values_list("parent_id", flat=True).first()
                )
            self._ancestors = ids
        return self._ancestors


class Ticker:
    """Calls `tick()` every `seconds` on a thread of its own (with its own database
    connection) while the `with` block runs: a job's handler may block in one long call."""

    def __init__(self, seconds: float, tick, name: str):
        self.seconds, self.tick = seconds, tick
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.wait(self.seconds):
                try:
                    self.tick()
                except Exception as exc:  # a busy database: the next tick tries again
                    log.warning("%s: %s", self.thread.name, exc)
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(self.seconds + 5)


def _heartbeat(job_id: int) -> Ticker:
    """Marks the job alive every few seconds while its handler runs."""

    def beat() -> None:
        Job.objects.filter(id=job_id, status=Job.Status.RUNNING).update(heartbeat_at=timezone.now())

    return Ticker(HEARTBEAT_SECONDS, beat, f"job-{job_id}-hb")


def _finish(
    job: Job,
    status: str,
    *,
    error: str = "",
    public_error: str = "",
    result: dict | None = None,
) -> None:
    """End the job. `error` is the admin's message; tenants read `public_error`, or a
    generic message when the error is not fit for them."""
    job.status = status
    job.error = error[:4000]
    job.public_error = (public_error or (GENERIC_JOB_FAILURE if error else ""))[:4000]
    job.finished_at = timezone.now()
    if status == Job.Status.SUCCEEDED:
        job.progress = 100
    if result:
        job.result = result
    at = f"{job.finished_at:%H:%M:%S}"
    job.log += f"{at} {status}{': ' + error if error else ''}\n"
    job.public_log += f"{at} {status}{': ' + job.public_error if job.public_error else ''}\n"
    job.save(
        update_fields=[
            "status", "error", "public_error", "finished_at", "progress", "result", "log",
            "public_log",
        ]
    )  # fmt: skip
    record_job_end(job)
    broadcast(job)


def job_execute(job_id: int, *, task_id: str = "") -> None:
    """Run a pending job to its end. A redelivered message for a job already taken is ignored.

    (Celery's Django fixup closes stale database connections around every task.)
    """
    claimed = Job.objects.filter(id=job_id, status=Job.Status.PENDING).update(
        status=Job.Status.RUNNING,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        celery_task_id=task_id or "",
    )
    if not claimed:
        log.info("job %s is not pending any more; nothing to do", job_id)
        return
    job = Job.objects.select_related("project", "requested_by").get(id=job_id)
    broadcast(job)
    ctx = JobContext(job)
    try:
        if job.cancel_requested:
            raise JobCancelled()
        with _heartbeat(job.id):
            result = registry.get(job.kind).run(job, ctx)
    except JobCancelled:
        _finish(job, Job.Status.CANCELLED, error=CANCELLED, public_error=CANCELLED)
    except SoftTimeLimitExceeded:
        _finish(job, Job.Status.FAILED, error=TIMED_OUT, public_error=TIMED_OUT)
    except JobFailed as exc:
        _finish(job, Job.Status.FAILED, error=str(exc), public_error=exc.public_message)
    except Exception as exc:
        # A handler's own errors (VirtError, validation) carry readable messages.
        log.exception("job %s (%s) failed", job.id, job.kind)
        _finish(job, Job.Status.FAILED, error=str(exc) or exc.__class__.__name__)
    else:
        _finish(job, Job.Status.SUCCEEDED, result=result or {})


def job_cancel(*, job: Job) -> Job:
    """Cancel a pending job at once; ask a running one to stop at its next step.

    A parent's children see its cancellation (JobContext.cancelled); those not started yet
    are cancelled by the parent as it stops."""
    if job.status in Job.ACTIVE:
        record_job_cancel(job)
    if job.status == Job.Status.PENDING:
        updated = Job.objects.filter(id=job.id, status=Job.Status.PENDING).update(
            status=Job.Status.CANCELLED,
            cancel_requested=True,
            finished_at=timezone.now(),
            error="Cancelled before it started",
            public_error="Cancelled before it started",
        )
        if updated:
            job.refresh_from_db()
            _run_abandon_hook(job)
            record_job_end(job)
            broadcast(job)
            return job
    if job.status == Job.Status.RUNNING:
        Job.objects.filter(id=job.id).update(cancel_requested=True)
        job.refresh_from_db()
    return job


def _run_abandon_hook(job: Job) -> None:
    try:
        registry.get(job.kind).on_abandoned(job)
    except Exception:
        log.exception("abandon hook for job %s failed", job.id)


def job_reap_stale(*, now=None) -> list[int]:
    """Fail running jobs whose worker stopped beating (killed, OOM, host rebooted)."""
    now = now or timezone.now()
    stale = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=now - STALE_AFTER)
    reaped = []
    for job in stale:
        updated = Job.objects.filter(id=job.id, status=Job.Status.RUNNING).update(
            status=Job.Status.FAILED,
            finished_at=now,
            error=(
                f"The worker running this job ({job.worker or 'unknown'}) stopped responding; "
                "the job was abandoned. Check the target's state and retry."
            ),
            # The worker's host name and pid are the admins' business.
            public_error=(
                "The worker running this job stopped responding; the job was abandoned. "
                "Check the target's state and retry."
            ),
        )
        if not updated:
            continue
        job.refresh_from_db()
        _run_abandon_hook(job)
        record_job_end(job)
        broadcast(job)
        reaped.append(job.id)
        # Its children that never started would wait for a parent that is gone.
        for child in Job.objects.filter(parent_id=job.id, status=Job.Status.PENDING):
            job_cancel(job=child)
    return reaped
