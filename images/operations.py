"""The images' long operations: import from a URL, and a copy to a host's storage pool.

Each is one registered object with its checks, its worker handler and its repair; the
pages and the API start them the same way (`IMPORT.start(...)`, `MIRROR.start(...)`).
"""

from __future__ import annotations

from django.db import transaction

from cloudpanel.errors import Conflict, InvalidInput, PermissionDenied
from cloudpanel.jobs.children import ChildSpec, run_children
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import Operation, register
from cloudpanel.jobs.services import JobConflict, JobContext, JobFailed
from cloudpanel.projects.access import is_admin
from hosts.models import Host

from . import fetch
from .catalogue import new_image
from .distribution import distribution_job_active, distribution_plan
from .fetch import DownloadError
from .intake import image_run_import, normalize_sha256
from .models import Image
from .replicas import image_ensure_replica, image_replica_mark_abandoned


class ImageOperation(Operation):
    target_type = Job.TargetType.IMAGE

    def target_name(self, target: Image) -> str:
        return target.name

    @staticmethod
    def image_of(job: Job, missing: str) -> Image:
        try:
            return Image.objects.get(pk=job.target_id)
        except Image.DoesNotExist:
            raise JobFailed(missing, public=True) from None


class ImportFromURL(ImageOperation):
    """Create a queued image and the job that downloads, verifies and inspects it.

    The URL is parsed strictly for everyone (see images.fetch); for tenants it must lead to
    public addresses only (no SSRF into the panel's networks). Only the URL rebuilt from
    the parsed fields is stored and fetched.
    """

    kind = "image.import"

    def check(self, *, user, target=None, url: str, sha256: str | None = None) -> dict:
        public_only = not is_admin(user)
        try:
            url = fetch.check_url(url, public_only=public_only).url
        except DownloadError as exc:
            raise InvalidInput({"url": str(exc)}) from None
        return {"url": url, "sha256": normalize_sha256(sha256), "public_only": public_only}

    def start(self, *, user, target=None, url: str, sha256: str | None = None, **fields) -> Job:
        """The job's target is the new image (`fields`: new_image's)."""
        params = self.check(user=user, url=url, sha256=sha256)
        image = new_image(user=user, source_url=params["url"], **fields)
        with transaction.atomic():
            image.status = Image.Status.QUEUED
            image.save()
            return self.create_job(user=user, target=image, params=params)

    def run(self, job: Job, ctx: JobContext) -> dict:
        image = self.image_of(job, "The image was deleted before its import ran.")
        image = image_run_import(
            image=image,
            url=job.params["url"],
            sha256=job.params.get("sha256", ""),
            public_only=job.params.get("public_only", False),
            ctx=ctx,
        )
        return {"image": image.id, "sha256": image.sha256, "file_size": image.file_size}

    def on_abandoned(self, job: Job) -> None:
        Image.objects.filter(
            pk=job.target_id, status__in=[Image.Status.QUEUED, Image.Status.IMPORTING]
        ).update(status=Image.Status.ERROR, error=job.error)


class MirrorToHost(ImageOperation):
    """Copy the image into a host's storage pool (a no-op if it is there already); no pool
    given: the host's default pool."""

    kind = "image.mirror"
    exclusive = False  # copies to several hosts may run side by side

    def check(self, *, user, target: Image, host: Host, pool: str | None = None) -> dict:
        if not is_admin(user):
            raise PermissionDenied("Only administrators can copy images to hosts.")
        if target.status != Image.Status.ACTIVE:
            raise Conflict(
                f"Image {target.name} is {target.status}, not active; it cannot be copied."
            )
        params = self.params_for(host, pool)
        pool = params["pool"]
        # Not exclusive on the image, but one copy at a time to one pool.
        running = (
            Job.objects.filter(
                kind=self.kind,
                target_type=self.target_type,
                target_id=target.id,
                status__in=Job.ACTIVE,
                params__host=host.id,
                params__pool=pool,
            )
            .order_by("created_at")
            .first()
        )
        if running is not None:
            raise JobConflict(running)
        return params

    @staticmethod
    def params_for(host: Host, pool: str | None = None) -> dict:
        """The job's parameters for a copy to `pool` (default: the host's default pool)."""
        pool = host.default_pool if pool is None else pool.strip()
        if not pool or len(pool) > 128:
            raise InvalidInput({"pool": "Give the name of a storage pool on the host."})
        return {"host": host.id, "host_name": host.name, "pool": pool}

    def run(self, job: Job, ctx: JobContext) -> dict:
        image = self.image_of(job, "The image or the host was deleted before the copy ran.")
        host = Host.objects.filter(pk=job.params["host"]).first()
        if host is None:
            raise JobFailed("The image or the host was deleted before the copy ran.", public=True)
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

    def on_abandoned(self, job: Job) -> None:
        if job.status == Job.Status.CANCELLED and job.started_at is None:
            return  # cancelled before it ran: any copy in flight belongs to another job
        image_replica_mark_abandoned(
            image_id=job.target_id,
            host_id=job.params.get("host"),
            pool=job.params.get("pool", ""),
        )


class Distribute(ImageOperation):
    """Bring the image to every online, schedulable host its distribution policy names that
    lacks a copy: one image.mirror child job per host, one host after another, each host's
    outcome in the result. Exclusive: one distribution of an image at a time."""

    kind = "image.distribute"

    def check(self, *, user, target: Image) -> dict:
        if not is_admin(user):
            raise PermissionDenied("Only administrators can copy images to hosts.")
        if target.status != Image.Status.ACTIVE:
            raise Conflict(
                f"Image {target.name} is {target.status}, not active; it cannot be copied."
            )
        if target.distribution == Image.Distribution.NONE:
            raise Conflict(
                f"Image {target.name} is copied on demand only: set its distribution first."
            )
        running = distribution_job_active(target)
        if running is not None:
            raise JobConflict(running)
        return {}

    def run(self, job: Job, ctx: JobContext) -> dict:
        image = self.image_of(job, "The image was deleted before its distribution ran.")
        plan = distribution_plan(image)
        copies = [row for row in plan if row["action"] == "copy"]
        hosts = {h.pk: h for h in Host.objects.filter(pk__in=[r["host"] for r in copies])}
        specs = [
            ChildSpec(MIRROR, image, MIRROR.params_for(hosts[row["host"]]))
            for row in copies
            if row["host"] in hosts
        ]
        ctx.job.result = {"hosts": plan}  # kept however the job ends
        ctx.progress(
            2,
            f"{len(specs)} host(s) to copy {image.name} to, "
            f"{sum(r['action'] == 'present' for r in plan)} have it, "
            f"{sum(r['action'] == 'skipped' for r in plan)} skipped",
        )
        outcomes = run_children(ctx, specs, start=5, end=100) if specs else []
        host_of = {c.id: c.params.get("host") for c in Job.objects.filter(parent=ctx.job)}
        by_host = {host_of.get(o["job"]): o for o in outcomes}
        failed = []
        for row in plan:
            outcome = by_host.get(row["host"])
            if row["action"] != "copy" or outcome is None:
                continue
            row["job"] = outcome["job"]
            if outcome["status"] == Job.Status.SUCCEEDED:
                row["action"] = "copied" if outcome["result"].get("copied") else "present"
            else:
                row["action"] = "failed"
                row["reason"] = outcome["error"] or outcome["status"]
                failed.append(f"{row['host_name']}: {row['reason']}")
        result = {"hosts": plan, "children": outcomes}
        ctx.job.result = result
        if failed:
            raise JobFailed(
                f"{image.name} could not be copied to {len(failed)} host(s): " + "; ".join(failed)
            )
        copied = sum(r["action"] == "copied" for r in plan)
        ctx.progress(100, f"{image.name}: copied to {copied} host(s)")
        return result


IMPORT = register(ImportFromURL())
MIRROR = register(MirrorToHost())
DISTRIBUTE = register(Distribute())
