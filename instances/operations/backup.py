"""Backups of an instance's disks, restore of a backup as a new instance, and capture of an
instance's root disk as a new image.

BACKUP records the Backup and its Volume rows (role backup) before libvirt makes anything;
a failure removes the copies made so far and leaves the Backup failed with the reason.
RESTORE builds the new instance the way create does (instances/operations/create.py),
with a copy of the backup as its root disk. CAPTURE streams a standalone copy of the root
disk into the image store.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from django.db import IntegrityError, transaction
from django.utils import timezone

from cloudpanel.errors import Conflict, InvalidInput
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import Operation, register
from cloudpanel.jobs.services import JobCancelled, JobContext, JobFailed
from cloudpanel.projects import access
from cloudpanel.projects.quotas import instance_needs, quota_reserve
from cloudpanel.virt import VirtError, domains, storage
from cloudpanel.virt import backup as vbackup
from cloudpanel.virt.volume_copy import copy_volume
from hosts.connection import connection_uri
from hosts.models import Host
from hosts.selectors import GIB
from images.models import Image
from images.store import StagingWriter

from .. import backups as _backups  # noqa: F401 - its receiver keeps backups on delete
from .. import scheduler
from ..models import Backup, Instance, Volume
from ..rules import GONE, no_room_message, require_act, require_host_online, validate_name
from ..volumes import volume_ready, volume_remove
from .base import InstanceOperation, RolledBack, uri_of
from .create import Create

log = logging.getLogger(__name__)

# A backup needs the disks at rest or a running QEMU to copy them.
_BACKUP_STATES = (Instance.State.RUNNING, Instance.State.PAUSED, Instance.State.SHUTOFF)


def _check_pool(pool: str | None) -> str | None:
    if pool in (None, ""):
        return None
    return validate_name(pool, "pool")


def _backup_volume_name(instance: Instance, backup: Backup, target: str) -> str:
    return f"{instance.domain_name}-backup{backup.pk}-{target}.qcow2"


def copy_disks(
    ctx: JobContext,
    instance: Instance,
    planned: list[tuple[vbackup.SourceDisk, Volume]],
    *,
    span: tuple[int, int] = (20, 70),
) -> str:
    """Copy the instance's disks into the planned volumes (rows exist, files not yet);
    returns the method used. Volume rows turn ready as their files appear."""
    uri = uri_of(instance)
    domain = instance.domain_name
    lo, hi = span
    state = domains.domain_state(uri, domain)

    def clone(disk: vbackup.SourceDisk, volume: Volume) -> None:
        if not disk.volume or not disk.pool:
            raise JobFailed(f"Disk {disk.target} is not a volume of a storage pool")
        info = storage.clone_volume(
            uri, volume.pool, disk.volume, volume.name, fmt="qcow2", source_pool=disk.pool
        )
        volume_ready(volume, info)

    def cancelled() -> bool:
        ctx.check_cancelled()  # raises JobCancelled: the copy is aborted, the job cancelled
        return False

    if state == "shutoff":
        for i, (disk, volume) in enumerate(planned):
            ctx.progress(
                lo + (hi - lo) * i // len(planned),
                f"Copying disk {disk.target} ({disk.path}) to {volume.pool}/{volume.name}",
                public=f"Copying disk {disk.target}",
            )
            ctx.check_cancelled()
            clone(disk, volume)
        return Backup.Method.OFFLINE_COPY
    if state not in ("running", "paused"):
        raise JobFailed(f"The instance is {state}; it cannot be backed up now", public=True)

    if vbackup.push_supported(uri, domain):
        for disk, volume in planned:
            volume_ready(
                volume,
                storage.create_volume(uri, volume.pool, volume.name, disk.capacity_bytes),
            )
        try:
            return _push(ctx, uri, domain, planned, cancelled, lo, hi)
        except vbackup.PushUnsupported as exc:
            ctx.log(f"the host refused the backup API ({exc}); falling back")
            for _disk, volume in planned:  # the snapshot-copy path clones into new files
                storage.delete_volume(uri, volume.pool, volume.name)
    return _snapshot_copy(ctx, uri, domain, planned, clone, cancelled, lo)


def _push(ctx, uri: str, domain: str, planned, cancelled, lo: int, hi: int) -> str:
    ctx.progress(lo, "Backing up the disks (libvirt backup, push mode)", public=True)
    shown = {"percent": lo}

    def progress(done: int, total: int) -> None:
        percent = lo + (hi - lo) * done // total if total else lo
        if percent != shown["percent"]:  # a write and a broadcast per change, not per poll
            shown["percent"] = percent
            ctx.progress(percent, None)

    vbackup.push_backup(
        uri,
        domain,
        {disk.target: volume.path for disk, volume in planned},
        progress=progress,
        cancelled=cancelled,
    )
    return Backup.Method.PUSH


def _snapshot_copy(ctx, uri: str, domain: str, planned, clone, cancelled, lo: int) -> str:
    by_target = {disk.target: volume for disk, volume in planned}
    ctx.progress(
        lo,
        "No backup API on the host: external snapshot, copy, block commit",
        public="Copying the disks behind a temporary snapshot",
    )
    vbackup.snapshot_copy_backup(
        uri,
        domain,
        [disk for disk, _ in planned],
        lambda disk: clone(disk, by_target[disk.target]),
        cancelled=cancelled,
    )
    return Backup.Method.SNAPSHOT_COPY


def _remove_volumes(uri: str, volumes: list[Volume]) -> list[str]:
    leftovers = []
    for volume in volumes:
        try:
            volume_remove(uri, volume)
        except VirtError as exc:
            leftovers.append(f"{volume.name} ({exc})")
    return leftovers


class TakeBackup(InstanceOperation):
    kind = "instance.backup"

    def check(self, *, user, target: Instance, name: str = "", pool: str | None = None) -> dict:
        require_act(user, target)
        name = validate_name(name) if (name or "").strip() else ""
        pool = _check_pool(pool)
        if pool is not None and not access.sees_infrastructure(user):
            raise InvalidInput({"pool": ["Only administrators can choose the pool."]})
        self.check_busy_or_state(target, _BACKUP_STATES, "be backed up")
        require_host_online(target, user)
        return {"name": name, "pool": pool}

    def start(self, *, user, target: Instance, **params) -> Job:
        job_params = self.check(user=user, target=target, **params)
        with transaction.atomic():
            quota_reserve(target.project, backups=1)  # locks the project: counts in turn
            return self.create_job(user=user, target=target, params=job_params)

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        host = instance.host
        pool = job.params.get("pool") or host.default_pool
        ctx.progress(5, "Reading the instance's disks", public=True)
        disks = vbackup.source_disks(uri, instance.domain_name)
        if not disks:
            raise JobFailed("The instance has no disk to back up", public=True)
        backup = Backup.objects.create(
            project=instance.project,
            instance=instance,
            instance_name=instance.name,
            flavor=instance.flavor,
            image=instance.image,
            host=host,
            name=job.params.get("name") or "",
            job=job,
            created_by=job.requested_by,
        )
        planned = [
            (
                disk,
                Volume.objects.create(
                    host=host,
                    instance=instance,
                    backup=backup,
                    pool=pool,
                    name=_backup_volume_name(instance, backup, disk.target),
                    role=Volume.Role.BACKUP,
                    format="qcow2",
                    capacity_bytes=disk.capacity_bytes,
                    disk_target=disk.target,
                ),
            )
            for disk in disks
        ]
        try:
            method = copy_disks(ctx, instance, planned)
            backup.method = method
            ctx.progress(75, "Computing the copies' sha256", public=True)
            size = 0
            for _disk, volume in planned:
                digest, stored = vbackup.volume_sha256(uri, volume.pool, volume.name)
                info = storage.volume_info(uri, volume.pool, volume.name)
                volume.sha256 = digest
                volume.allocation_bytes = info.allocation_bytes
                volume.save(update_fields=["sha256", "allocation_bytes"])
                size += stored
            root = planned[0][1]
            backup.sha256, backup.size_bytes = root.sha256, size
            backup.state, backup.completed_at = Backup.State.READY, timezone.now()
            backup.save(update_fields=["method", "sha256", "size_bytes", "state", "completed_at"])
        except BaseException as exc:
            self._fail(ctx, uri, backup, [v for _, v in planned], exc)
            raise
        return {
            "backup": backup.pk,
            "method": backup.method,
            "sha256": backup.sha256,
            "size_bytes": backup.size_bytes,
        }

    @staticmethod
    def _fail(ctx, uri, backup: Backup, volumes: list[Volume], exc: BaseException) -> None:
        try:
            leftovers = _remove_volumes(uri, volumes)
        except Exception as rb_exc:  # the original failure is the one to report
            log.exception("removing the partial copies of %s failed", backup)
            leftovers = [str(rb_exc)]
        if isinstance(exc, JobCancelled):
            reason = "Cancelled"
        else:
            reason = str(exc) or exc.__class__.__name__
        if leftovers:
            reason += f" (could not remove: {', '.join(leftovers)})"
        backup.state, backup.error = Backup.State.FAILED, reason
        backup.completed_at = timezone.now()
        backup.save(update_fields=["state", "error", "completed_at"])
        ctx.log(
            "removed the partial copies" if not leftovers else f"left behind: {leftovers}",
            public="removed the partial copies" if not leftovers else "some copies remain",
        )

    def on_abandoned(self, job: Job) -> None:
        super().on_abandoned(job)
        Backup.objects.filter(job=job, state=Backup.State.CREATING).update(
            state=Backup.State.FAILED,
            error=f"Job {job.id} was abandoned: {job.error}",
            completed_at=timezone.now(),
        )


class _RestoreProvision(Create):
    """Create's provisioning with the root disk copied from a backup instead of made from
    the image (which may be gone since)."""

    kind = "backup.restore-provision"  # never registered: RESTORE runs it

    def __init__(self, backup_volume: Volume):
        self.backup_volume = backup_volume

    def _root_source(self, ctx, instance, host, pool):
        return None  # the root disk is the backup's copy, not the image's

    def _make_root_disk(self, uri, pool, name, capacity, image, replica):
        source = self.backup_volume
        if source.host_id == self.host.pk:
            info = storage.clone_volume(
                uri, pool, source.name, name, fmt="qcow2", source_pool=source.pool
            )
        else:
            info = copy_volume(
                connection_uri(source.host), source.pool, source.name, uri, pool, name
            )
        if info.capacity_bytes < capacity:
            domains.resize_volume(uri, pool, name, capacity)
            info = storage.volume_info(uri, pool, name)
        return info


class Restore(Operation):
    kind = "backup.restore"
    target_type = Job.TargetType.BACKUP
    exclusive = False  # reading a backup changes it not: restores of one backup may overlap

    def target_name(self, target: Backup) -> str:
        return target.name or f"backup {target.pk} of {target.instance_name}"

    def check(self, *, user, target: Backup, name: str, host: Host | None = None) -> dict:
        require_act(user, target.project)
        access.require_host_choice_allowed(user, host)
        name = validate_name(name)
        if target.state != Backup.State.READY:
            raise Conflict(f"The backup is {target.state}; only a ready backup can be restored.")
        if target.flavor is None:
            raise Conflict("The backup's flavor was deleted; it cannot be restored.")
        if _root_backup_volume(target) is None:
            raise Conflict("The backup holds no disk copy.")
        if Instance.objects.filter(project=target.project, name=name).exists():
            raise InvalidInput(
                {"name": [f"Project {target.project.name} already has an instance {name}."]}
            )
        return {"name": name, "host": host.pk if host else None}

    def start(self, *, user, target: Backup, **params) -> Job:
        job_params = self.check(user=user, target=target, **params)
        host = params.get("host") or target.host
        flavor = target.flavor
        try:
            with transaction.atomic():
                # A restore makes an instance: it counts against the quota like a create.
                quota_reserve(target.project, **instance_needs(flavor))
                chosen = scheduler.select_host(flavor, pinned=host)
                Host.objects.select_for_update().filter(pk=chosen.pk).exists()
                chosen = scheduler.select_host(flavor, pinned=chosen)
                instance = Create._record(
                    user, job_params["name"], target.project, flavor, target.image, chosen
                )
                job_params["instance"] = instance.pk
                job = self.create_job(user=user, target=target, params=job_params)
                Instance.objects.filter(pk=instance.pk).update(current_job=job)
        except scheduler.NoValidHost as exc:
            raise InvalidInput({"host": [no_room_message(user, exc, flavor)]}) from None
        except IntegrityError:
            raise InvalidInput(
                {"name": [f"Project {target.project.name} already has an instance."]}
            ) from None
        return job

    def run(self, job: Job, ctx: JobContext) -> dict:
        backup = Backup.objects.select_related("host").filter(pk=job.target_id).first()
        instance = (
            Instance.objects.select_related("host", "flavor", "image", "project")
            .filter(pk=job.params.get("instance"))
            .first()
        )
        if instance is None:
            raise JobFailed("The instance being restored was deleted", public=True)
        source = _root_backup_volume(backup) if backup else None
        provision = _RestoreProvision(source)
        provision.host = instance.host
        ctx.progress(2, "Restoring the backup as a new instance", public=True)
        try:
            if source is None:
                Instance.objects.filter(pk=instance.pk).update(
                    state=Instance.State.ERROR, state_reason="The backup was deleted"
                )
                raise JobFailed("The backup was deleted before it was restored", public=True)
            result = provision.act(job, ctx, instance)
        except Exception:
            Instance.objects.filter(pk=instance.pk, current_job_id=job.id).update(current_job=None)
            raise
        provision._settle(instance, job, result["state"])
        return {"instance": instance.pk, "state": result["state"], "backup": backup.pk}

    def on_abandoned(self, job: Job) -> None:
        reason = f"Job {job.id} ({job.kind}) was abandoned: {job.error}"
        Instance.objects.filter(pk=job.params.get("instance")).update(
            state=Instance.State.ERROR, state_reason=reason
        )
        Instance.objects.filter(pk=job.params.get("instance"), current_job_id=job.id).update(
            current_job=None
        )


def _root_backup_volume(backup: Backup) -> Volume | None:
    volumes = list(backup.volumes.filter(state=Volume.State.READY).select_related("host"))
    return next((v for v in volumes if v.disk_target in ("vda", "sda")), None) or (
        volumes[0] if volumes else None
    )


class Capture(InstanceOperation):
    kind = "instance.capture"

    def check(self, *, user, target: Instance, name: str) -> dict:
        require_act(user, target)
        name = validate_name(name)
        self.check_busy_or_state(target, _BACKUP_STATES, "be captured")
        require_host_online(target, user)
        if target.state in GONE:
            raise Conflict(f"Instance {target.name} is {target.state}.")
        return {"name": name}

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        from images.intake import image_upload

        uri = uri_of(instance)
        host = instance.host
        disks = vbackup.source_disks(uri, instance.domain_name)
        if not disks:
            raise JobFailed("The instance has no disk to capture", public=True)
        root = disks[0]
        # A standalone copy on the host first: the root disk itself is an overlay on the
        # image's replica, and a running guest's disk is copied point-in-time.
        temp = Volume.objects.create(
            host=host,
            instance=instance,
            pool=host.default_pool,
            name=f"{instance.domain_name}-capture{job.pk}.qcow2",
            role=Volume.Role.BACKUP,
            capacity_bytes=root.capacity_bytes,
            disk_target=root.target,
        )
        try:
            method = copy_disks(ctx, instance, [(root, temp)], span=(10, 50))
            ctx.progress(55, "Writing the copy into the image store", public=True)
            writer = StagingWriter()
            try:
                vbackup.download_volume(uri, temp.pool, temp.name, writer.write)
                staged = writer.finish()
            except BaseException:
                writer.discard()
                raise
            source = instance.image
            image = image_upload(
                user=job.requested_by,
                fileobj=SimpleNamespace(staged=staged),
                name=job.params["name"],
                disk_format=Image.Format.QCOW2,
                project=instance.project,
                visibility=Image.Visibility.PROJECT,
                os_type=source.os_type if source else None,
                cloud_init=source.cloud_init if source else None,
                default_user=source.default_user if source else None,
                firmware=source.firmware if source else None,
                disk_bus=source.disk_bus if source else None,
                min_ram_mib=source.min_ram_mib if source else None,
                min_disk_gib=max(1, -(-root.capacity_bytes // GIB)),
            )
        finally:
            try:
                volume_remove(uri, temp)
            except VirtError:
                log.exception("could not remove the capture copy %s", temp)
        ctx.progress(95, f"Image {image.name} is active", public=True)
        return {"image": image.pk, "sha256": image.sha256, "method": method}


BACKUP = register(TakeBackup())
RESTORE = register(Restore())
CAPTURE = register(Capture())

__all__ = ["BACKUP", "CAPTURE", "RESTORE", "RolledBack", "copy_disks"]
