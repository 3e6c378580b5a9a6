"""Disk mirroring: block copy, pivot, stop (admins only).

MIRROR_START copies a running instance's disk into a new volume of a pool on its host (a
pool another host sees at the same path, like the lab's `shared`, makes the copy a disaster
recovery source: the copy is full, with no backing file). The job ends once the copy has
converged (DiskMirror `mirrored`); the block job goes on after it, keeping the copy in sync.
MIRROR_PIVOT moves the instance onto the copy (the old volume goes); MIRROR_STOP ends the
mirroring and keeps the copy as a standalone disk (`stopped`, synced_at = when it stopped).

What libvirt does to a mirror outside these jobs (the domain stops, the copy fails) is
instances/mirror_events.py.
"""

from __future__ import annotations

import re
import time

from django.utils import timezone

from cloudpanel.errors import Conflict, InvalidInput, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobCancelled, JobContext, JobFailed
from cloudpanel.projects import access
from cloudpanel.virt import AlreadyExists, NotFound, VirtError, blockjobs, storage

from ..mirror_events import mirror_apply_pivot, mirror_fail, mirrors_refresh, volume_at
from ..models import DiskMirror, Instance, Volume
from ..rules import require_host_online
from ..signals import instance_changed
from ..volumes import volume_plan, volume_ready
from .base import InstanceOperation, RolledBack, uri_of

POLL_SECONDS = 0.5
_DISK_NAME = re.compile(r"[a-z]{1,8}[a-z0-9]{0,8}")
MAX_BANDWIDTH_MIB = 100_000


def _require_admin(user) -> None:
    if not access.is_admin(user):
        raise PermissionDenied("Only administrators may mirror disks.")


def _announce(instance: Instance) -> None:
    instance_changed.send(sender=Instance, instance=instance)


def mirror_volume_name(instance: Instance, mirror: DiskMirror) -> str:
    return f"{instance.domain_name}-{mirror.disk_target}-mirror{mirror.pk}.qcow2"


class _MirrorOperation(InstanceOperation):
    def _finish(self, instance: Instance, job: Job, *, reason: str | None) -> None:
        # A mirror that fails leaves the instance as it was: its state is read back, its
        # reason left alone (the mirror row says what went wrong).
        super()._finish(instance, job, reason=None)


class MirrorStart(_MirrorOperation):
    kind = "instance.mirror"

    def check(
        self,
        *,
        user,
        target: Instance,
        disk: str = "vda",
        pool: str = "",
        bandwidth_mib: int | None = None,
    ) -> dict:
        _require_admin(user)
        if bandwidth_mib is not None and not (
            isinstance(bandwidth_mib, int) and 1 <= bandwidth_mib <= MAX_BANDWIDTH_MIB
        ):
            raise InvalidInput(
                {"bandwidth_mib": [f"A whole number of MiB/s from 1 to {MAX_BANDWIDTH_MIB}."]}
            )
        disk = (disk or "").strip()
        pool = (pool or "").strip()
        if not _DISK_NAME.fullmatch(disk):
            raise InvalidInput({"disk": ["A disk target as the domain names it: vda, sdb, ..."]})
        if not pool:
            raise InvalidInput({"pool": ["A storage pool of the instance's host is required."]})
        self.check_busy_or_state(target, (Instance.State.RUNNING,), "mirror a disk")
        if target.mirrors.filter(disk_target=disk, state__in=DiskMirror.ACTIVE).exists():
            raise Conflict(
                f"Disk {disk} of instance {target.name} is mirrored already: stop or pivot "
                "that mirror first."
            )
        host = require_host_online(target, user)
        uri = uri_of(target)
        try:
            storage.pool_path(uri, pool)
        except NotFound:
            raise InvalidInput(
                {"pool": [f"Host {host.name} has no storage pool {pool}."]}
            ) from None
        if target.current_job_id is None:  # a busy instance gets the job conflict instead
            try:
                blockjobs.disk_size(uri, target.domain_name, disk)  # a disk, not a cdrom
            except NotFound:
                raise InvalidInput(
                    {"disk": [f"Instance {target.name} has no disk {disk}."]}
                ) from None
        return {"disk": disk, "pool": pool, "bandwidth_mib": bandwidth_mib}

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        disk, pool = job.params["disk"], job.params["pool"]
        if instance.mirrors.filter(disk_target=disk, state__in=DiskMirror.ACTIVE).exists():
            raise RolledBack(f"Disk {disk} is mirrored already", public=True)
        mirror = DiskMirror.objects.create(instance=instance, disk_target=disk, job=job)
        try:
            return self._copy(job, ctx, instance, mirror, uri, disk, pool)
        except BaseException as exc:
            self._undo(uri, instance, mirror, exc)
            if isinstance(exc, JobFailed):
                raise RolledBack(str(exc), public=exc.public_message or False) from exc
            if isinstance(exc, VirtError):
                raise RolledBack(str(exc), public=f"Mirroring disk {disk} failed") from exc
            raise

    def _copy(self, job, ctx, instance, mirror, uri, disk, pool) -> dict:
        size = blockjobs.disk_size(uri, instance.domain_name, disk)
        name = mirror_volume_name(instance, mirror)
        ctx.progress(
            5,
            f"Creating mirror volume {pool}/{name} on host {instance.host.name}",
            public=f"Preparing the copy of {disk}",
        )
        volume = volume_plan(
            instance=instance,
            pool=pool,
            name=name,
            role=Volume.Role.MIRROR,
            capacity=size.capacity_bytes,
        )
        volume.disk_target = disk
        volume.save(update_fields=["disk_target"])
        mirror.volume = volume
        mirror.save(update_fields=["volume", "updated_at"])
        try:
            info = storage.create_volume(uri, pool, name, size.capacity_bytes, fmt="qcow2")
        except AlreadyExists:
            # Not ours: the failure path must not delete it.
            mirror.volume = None
            mirror.save(update_fields=["volume", "updated_at"])
            volume.delete()
            raise
        volume_ready(volume, info)

        ctx.progress(10, f"Copying disk {disk} to {info.path}", public=f"Copying disk {disk}")
        bandwidth = (job.params.get("bandwidth_mib") or 0) * 1024 * 1024
        blockjobs.copy_start(uri, instance.domain_name, disk, info.path, bandwidth=bandwidth)
        shown = -1
        while True:
            status = blockjobs.copy_status(uri, instance.domain_name, disk)
            if status is None:
                raise JobFailed(
                    f"The block copy of {disk} ended before it converged (the domain stopped, "
                    "or QEMU gave up)",
                    public=True,
                )
            if status.ready:
                ctx.log(f"Block copy of {disk} ready at {status.cur} of {status.end} bytes")
                break
            percent = 10 + 85 * status.percent // 100
            if percent != shown:
                shown = percent
                ctx.progress(
                    percent,
                    f"Copying disk {disk}: {status.cur} of {status.end} bytes",
                    public=f"Copying disk {disk}: {status.percent}%",
                )
            else:
                ctx.check_cancelled()
            time.sleep(POLL_SECONDS)
        now = timezone.now()
        mirror.state, mirror.synced_at = DiskMirror.State.MIRRORED, now
        mirror.save(update_fields=["state", "synced_at", "updated_at"])
        try:
            volume_ready(volume, storage.volume_info(uri, pool, name))
        except VirtError:
            pass  # sizes only
        ctx.progress(
            100, f"Disk {disk} is mirrored to {pool}/{name}", public=f"Disk {disk} is mirrored"
        )
        _announce(instance)
        return {"mirror": mirror.pk, "volume": volume.pk, "pool": pool, "path": volume.path}

    @staticmethod
    def _undo(uri: str, instance: Instance, mirror: DiskMirror, exc: BaseException) -> None:
        """Stop the copy if it started, remove the partial volume, say why on the mirror."""
        try:
            blockjobs.copy_cancel(uri, instance.domain_name, mirror.disk_target)
        except VirtError:
            pass
        mirror.refresh_from_db()
        why = str(exc) or type(exc).__name__
        if isinstance(exc, JobCancelled):
            why = "Cancelled"
        mirror_fail(mirror, why, uri=uri)
        _announce(instance)

    def on_abandoned(self, job: Job) -> None:
        """The worker died (or the job was cancelled before it ran): the instance is as it
        was; a copy that may have started is stopped and its volume removed."""
        for mirror in DiskMirror.objects.filter(
            job=job, state__in=DiskMirror.ACTIVE
        ).select_related("instance__host", "volume"):
            uri = None
            try:
                uri = uri_of(mirror.instance)
                blockjobs.copy_cancel(uri, mirror.instance.domain_name, mirror.disk_target)
            except (JobFailed, VirtError):
                pass
            mirror_fail(mirror, f"Job {job.id} was abandoned: {job.error}", uri=uri)
        Instance.objects.filter(pk=job.target_id, current_job_id=job.id).update(current_job=None)


class _OnMirror(_MirrorOperation):
    """An operation on one active mirror; its target is the mirror's instance."""

    verb = ""

    def check(self, *, user, target: Instance, mirror: DiskMirror) -> dict:
        _require_admin(user)
        if mirror.instance_id != target.pk:
            raise InvalidInput({"mirror": ["Unknown mirror."]})
        if mirror.state not in DiskMirror.ACTIVE:
            raise Conflict(
                f"The mirror of {mirror.disk_target} is {mirror.get_state_display().lower()}; "
                f"there is nothing to {self.verb}."
            )
        require_host_online(target, user)
        return {"mirror": mirror.pk, "disk": mirror.disk_target}

    def _mirror(self, job: Job, instance: Instance) -> DiskMirror:
        mirror = (
            DiskMirror.objects.select_related("volume")
            .filter(pk=job.params.get("mirror"), instance=instance)
            .first()
        )
        if mirror is None:
            raise RolledBack("The mirror no longer exists", public=True)
        if mirror.state not in DiskMirror.ACTIVE:
            raise RolledBack(f"The mirror is {mirror.state} already", public=True)
        return mirror

    def on_abandoned(self, job: Job) -> None:
        """Whatever libvirt did meanwhile, read it back (the instance itself is fine)."""
        Instance.objects.filter(pk=job.target_id, current_job_id=job.id).update(current_job=None)
        instance = (
            Instance.objects.select_related("host", "current_job").filter(pk=job.target_id).first()
        )
        if instance is not None:
            try:
                mirrors_refresh(instance)
            except Exception:  # repair is best effort; reconcile and reads refresh again
                pass


class MirrorPivot(_OnMirror):
    kind = "instance.mirror-pivot"
    verb = "pivot to"

    def check(self, *, user, target: Instance, mirror: DiskMirror) -> dict:
        params = super().check(user=user, target=target, mirror=mirror)
        if mirror.state != DiskMirror.State.MIRRORED:
            raise Conflict(
                f"The mirror of {mirror.disk_target} has not converged yet; pivot once it "
                "is mirrored."
            )
        return params

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        mirror = self._mirror(job, instance)
        disk = mirror.disk_target
        status = blockjobs.copy_status(uri, instance.domain_name, disk)
        if status is None or not status.ready:
            why = "the block copy is gone" if status is None else "the copy is not in sync"
            raise RolledBack(f"Cannot pivot disk {disk}: {why}", public=True)
        old = volume_at(instance, blockjobs.disk_source(uri, instance.domain_name, disk), disk)
        ctx.progress(
            30,
            f"Pivoting disk {disk} to {mirror.volume.path}",
            public=f"Switching disk {disk} to its mirror",
        )
        new_path = blockjobs.copy_pivot(uri, instance.domain_name, disk)
        if new_path != mirror.volume.path:
            raise JobFailed(f"After the pivot disk {disk} runs on {new_path!r}, not the mirror")
        persistent = blockjobs.disk_source(uri, instance.domain_name, disk, inactive=True)
        if persistent != new_path:
            ctx.log(f"The persistent definition still names {persistent} for {disk}")
        ctx.progress(70, f"Removing the old volume {old}" if old else "No old volume to remove")
        mirror_apply_pivot(mirror, uri=uri, old=old)
        return {
            "mirror": mirror.pk,
            "volume": mirror.volume_id,
            "path": new_path,
            "removed": str(old) if old else None,
        }


class MirrorStop(_OnMirror):
    kind = "instance.mirror-stop"
    verb = "stop"

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        mirror = self._mirror(job, instance)
        disk = mirror.disk_target
        status = blockjobs.copy_status(uri, instance.domain_name, disk)
        ctx.progress(30, f"Stopping the mirror of {disk}", public=True)
        if status is None:
            mirror_fail(mirror, f"The block copy of {disk} had ended already.", uri=uri)
            _announce(instance)
            raise RolledBack(f"The block copy of {disk} had ended already", public=True)
        blockjobs.copy_cancel(uri, instance.domain_name, disk)
        if not status.ready:
            mirror_fail(mirror, "Stopped before the copy was complete.", uri=uri)
            _announce(instance)
            return {"mirror": mirror.pk, "state": mirror.state}
        _keep_copy(mirror, uri)
        volume = mirror.volume
        _announce(instance)
        return {
            "mirror": mirror.pk,
            "state": mirror.state,
            "volume": mirror.volume_id,
            "path": volume.path if volume else "",
        }


def _keep_copy(mirror: DiskMirror, uri: str, note: str = "") -> None:
    """The block copy was just cancelled after it converged: the copy equals the disk as of
    now, a standalone disk that stays (state stopped)."""
    mirror.state, mirror.synced_at, mirror.error = DiskMirror.State.STOPPED, timezone.now(), note
    mirror.save(update_fields=["state", "synced_at", "error", "updated_at"])
    volume = mirror.volume
    if volume is not None:
        try:
            volume_ready(volume, storage.volume_info(uri, volume.pool, volume.name))
        except VirtError:
            pass


def mirrors_keep_before_poweroff(ctx: JobContext, instance: Instance, uri: str) -> None:
    """A domain that goes down takes its block copies with it, cut mid-write (then they are
    of no use, see mirror_events). Ending each converged one first keeps it as a consistent
    copy of the disk as of this moment."""
    kept = 0
    for mirror in instance.mirrors.filter(state=DiskMirror.State.MIRRORED).select_related(
        "volume"
    ):
        status = blockjobs.copy_status(uri, instance.domain_name, mirror.disk_target)
        if status is None or not status.ready:
            continue  # mirror_events fails it once the domain is down
        blockjobs.copy_cancel(uri, instance.domain_name, mirror.disk_target)
        _keep_copy(mirror, uri, "Mirroring ended as the instance was powered off; the copy "
                   "is kept as of that moment.")  # fmt: skip
        ctx.log(f"Mirror of {mirror.disk_target} stopped before the power-off: the copy stays")
        kept += 1
    if kept:
        _announce(instance)


MIRROR_START = register(MirrorStart())
MIRROR_PIVOT = register(MirrorPivot())
MIRROR_STOP = register(MirrorStop())
