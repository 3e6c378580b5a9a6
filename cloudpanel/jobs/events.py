"""Jobs as socket events: the job's Channels groups and the two views sent to them."""

from __future__ import annotations

from cloudpanel.live.publisher import publish
from cloudpanel.projects.access import public_job_error

from .models import Job


def job_to_event(job: Job, *, public: bool = False) -> dict:
    """The job as a socket event: the admin's view, or with `public` the tenant's."""
    if public:
        step, error = job.public_step, public_job_error(job)
    else:
        step, error = job.step, job.error
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "step": step,
        "error": error,
        "target": {"type": job.target_type, "id": job.target_id, "name": job.target_name},
        "project": job.project_id,
    }


def job_groups(job: Job) -> list[str]:
    groups = [f"job.{job.id}", "jobs.all"]
    if job.project_id:
        groups.append(f"jobs.project.{job.project_id}")
    return groups


def broadcast(job: Job) -> None:
    """Push the job's state to its Channels groups; a down layer never fails the job."""
    # Both views travel to the consumers, which send each socket only the one its user may
    # read (and re-check that the user still sees the job's project). publish() keeps one
    # Redis connection per process and never raises.
    message = {
        "type": "job.update",
        "job": job_to_event(job),
        "public": job_to_event(job, public=True),
    }
    publish(job_groups(job), message)


def on_job_changed(sender, job: Job, **kwargs) -> None:
    broadcast(job)
