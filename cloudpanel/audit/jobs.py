"""The audit of job-backed operations: a start (accepted, or refused) and a job's end.

Operation.start of every operation (and of every subclass overriding it) goes through
`audited_start`; the job runner calls `record_job_end`. The events are described from the
objects at hand (the job row carries target, project and who asked): one INSERT each.
"""

from __future__ import annotations

import contextvars
import functools

from django.core import exceptions as django_exceptions

from cloudpanel import errors

from .services import audit_record

# Set while an audited start runs: a subclass's start calling its parent's (or another
# operation's) records one event, the outermost.
_starting: contextvars.ContextVar = contextvars.ContextVar("cloudpanel_audit_start", default=False)

DENIALS = (django_exceptions.PermissionDenied, errors.NotFound, errors.QuotaExceeded)


def refusal_result(exc: BaseException) -> str:
    return "denied" if isinstance(exc, DENIALS) else "failed"


def refusal_message(exc: BaseException) -> str:
    if isinstance(exc, errors.PAGE_ERRORS):
        return errors.page_message(exc)
    return f"{exc.__class__.__name__}: {exc}"


def audited_start(start):
    """Wrap an Operation's start: `accepted` with its job, or `denied`/`failed` with the
    refusal's message (re-raised)."""

    @functools.wraps(start)
    def wrapper(self, *, user, target=None, **params):
        if _starting.get():
            return start(self, user=user, target=target, **params)
        token = _starting.set(True)
        try:
            job = start(self, user=user, target=target, **params)
        except Exception as exc:
            _record_refusal(self, user, target, params, exc)
            raise
        finally:
            _starting.reset(token)
        audit_record(
            action=self.kind,
            user=user,
            project=job.project_id,
            target_type=job.target_type,
            target_id=job.target_id,
            target_name=job.target_name,
            params={**params, **(job.params or {})},
            result="accepted",
            job=job,
        )
        return job

    wrapper.__audited__ = True
    return wrapper


def _record_refusal(operation, user, target, params: dict, exc: BaseException) -> None:
    project = params.get("project")
    if target is not None and project is None:
        project = getattr(target, "project_id", None)
    name = ""
    if target is not None:
        try:
            name = operation.target_name(target)
        except Exception:
            name = str(target)
    audit_record(
        action=operation.kind,
        user=user,
        project=project,
        target=target,
        target_type=operation.target_type,
        target_name=name or str(params.get("name") or ""),
        params=params,
        result=refusal_result(exc),
        message=refusal_message(exc),
    )


def record_job_end(job) -> None:
    """A job ended (succeeded, failed, cancelled, reaped): its outcome, linked to it, in the
    name of whoever asked for it."""
    succeeded = job.status == "succeeded"
    audit_record(
        action=job.kind,
        user=job.requested_by if job.requested_by_id else None,
        project=job.project_id,
        target_type=job.target_type,
        target_id=job.target_id if job.target_id is not None else "",
        target_name=job.target_name,
        params={"status": job.status, **({"result": job.result} if job.result else {})},
        result="ok" if succeeded else "failed",
        message="" if succeeded else (job.error or job.status),
        job=job,
    )


def record_job_cancel(job) -> None:
    """Someone asked for a job to stop (the request's user)."""
    audit_record(
        action="job.cancel",
        project=job.project_id,
        target_type="job",
        target_id=job.pk,
        target_name=f"{job.kind} {job.target_name}".strip(),
        params={"kind": job.kind, "status": job.status},
        job=job,
    )
