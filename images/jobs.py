"""Job handlers of the images app: URL import and copies to hosts (thin: they call services)."""

from __future__ import annotations

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import job_handler
from cloudpanel.jobs.services import JobFailed
from hosts.models import Host

from .intake import IMPORT_JOB, image_run_import
from .models import Image
from .replicas import MIRROR_JOB, image_ensure_replica, image_replica_mark_abandoned


def _import_abandoned(job: Job) -> None:
    Image.objects.filter(
        pk=job.target_id, status__in=[Image.Status.QUEUED, Image.Status.IMPORTING]
    ).update(status=Image.Status.ERROR, error=job.error)


@job_handler(IMPORT_JOB, on_abandoned=_import_abandoned)
def run_image_import(job: Job, ctx) -> dict:
    try:
        image = Image.objects.get(pk=job.target_id)
    except Image.DoesNotExist:
        raise JobFailed("The image was deleted before its import ran.", public=True) from None
    image = image_run_import(
        image=image,
        url=job.params["url"],
        sha256=job.params.get("sha256", ""),
        public_only=job.params.get("public_only", False),
        ctx=ctx,
    )
    return {"image": image.id, "sha256": image.sha256, "file_size": image.file_size}


def _mirror_abandoned(job: Job) -> None:
    if job.status == Job.Status.CANCELLED and job.started_at is None:
        return  # cancelled before it ran: any copy in flight belongs to another job
    image_replica_mark_abandoned(
        image_id=job.target_id, host_id=job.params.get("host"), pool=job.params.get("pool", "")
    )


@job_handler(MIRROR_JOB, on_abandoned=_mirror_abandoned)
def run_image_mirror(job: Job, ctx) -> dict:
    try:
        image = Image.objects.get(pk=job.target_id)
        host = Host.objects.get(pk=job.params["host"])
    except (Image.DoesNotExist, Host.DoesNotExist):
        raise JobFailed(
            "The image or the host was deleted before the copy ran.", public=True
        ) from None
    replica = image_ensure_replica(
        image=image,
        host=host,
        pool=job.params.get("pool", host.default_pool),
        ctx=ctx,
        progress_range=(0, 100),
    )
    if not replica.copied:
        ctx.log(f"{image.name} is already on {host.name}/{replica.pool}; nothing copied.")
    return {
        "replica": replica.id,
        "volume": replica.volume,
        "path": replica.path,
        "copied": replica.copied,
    }
