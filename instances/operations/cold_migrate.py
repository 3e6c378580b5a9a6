"""Cold migration: a shut-off instance moves to another host, disks and definition.

Each disk volume is streamed (sparse) into a new volume on the target (cloudpanel.virt.
volume_copy), the domain is defined there from the source's inactive definition with its
disk paths rewritten, then the database names the target, and only then is the source's
domain undefined and its volumes deleted. Until the database is switched the source is
untouched: any failure or a cancellation removes what was made on the target, and the
instance stays where it was.

Image copies the disks rest on (a qcow2 root's backing file, an installer ISO) are brought
to the target first through images.replicas; they are shared caches and stay there. A
qcow2 disk keeps its backing file's path, so the target's copy of the image must be at the
same path (pools of one name have one path on every host here; otherwise the job says so).
Disks on storage the target shares (cloudpanel.virt.migration.storage_shared) are neither
copied nor deleted: only the definition moves.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction

from cloudpanel import virt
from cloudpanel.errors import Conflict, InvalidInput, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobCancelled, JobContext, JobFailed
from cloudpanel.projects.access import is_admin
from cloudpanel.virt import domains, migration, storage
from cloudpanel.virt.relocate_xml import disk_files, relocate_domain_xml
from cloudpanel.virt.volume_copy import CopyCancelled, copy_volume
from hosts.connection import connection_uri
from hosts.models import Host
from images.models import ImageReplica
from images.replicas import image_ensure_replica

from .. import scheduler
from ..models import DiskMirror, Instance, Volume
from ..rules import require_host_online
from ..services import instance_sync_state
from ..signals import instance_changed
from .base import InstanceOperation, RolledBack

log = logging.getLogger(__name__)

# The instance's own disks; mirror and backup volumes belong to other features.
DISK_ROLES = (Volume.Role.ROOT, Volume.Role.DATA, Volume.Role.CDROM)


def choose_target(instance: Instance, host: Host | None) -> Host:
    """The checked target: H1's placement when it is there, else the scheduler's rules."""
    try:
        from instances import placement
    except ImportError:
        placement = None
    if placement is not None and hasattr(placement, "migration_target"):
        return placement.migration_target(instance=instance, host=host, live=False)
    return _fallback_target(instance, host)


def _fallback_target(instance: Instance, host: Host | None) -> Host:
    from hosts.selectors import host_list_with_allocation

    if instance.mirrors.filter(state__in=DiskMirror.ACTIVE).exists():
        raise Conflict(
            f"Instance {instance.name} has a disk mirror running: stop or pivot the mirror first."
        )
    need = scheduler.Need.of(instance.flavor)
    candidates = host_list_with_allocation().exclude(pk=instance.host_id).order_by("name")
    if host is not None:
        if host.pk == instance.host_id:
            raise InvalidInput({"host": [f"Instance {instance.name} is on {host.name} already."]})
        candidates = candidates.filter(pk=host.pk)
    reasons = []
    best = None
    for candidate in candidates:
        reason = scheduler.why_not(candidate, need)
        if reason:
            reasons.append(reason)
        elif best is None:
            best = candidate
    if best is None:
        detail = "; ".join(reasons) or "there is no other host"
        raise Conflict(f"No host can take instance {instance.name}: {detail}.")
    return best


class ColdMigrate(InstanceOperation):
    kind = "instance.cold-migrate"

    def check(self, *, user, target: Instance, host: Host | None = None) -> dict:
        if not is_admin(user):
            raise PermissionDenied("Only administrators can migrate instances.")
        # A running instance moves live (H1's instance.migrate), not here.
        self.check_busy_or_state(target, {Instance.State.SHUTOFF}, "be cold-migrated")
        require_host_online(target, user)
        if target.snapshots.exists():
            raise Conflict(
                f"Instance {target.name} has snapshots; delete them before a cold migration "
                "(their libvirt records do not move)."
            )
        chosen = choose_target(target, host)
        return {"host": chosen.pk, "host_name": chosen.name, "source": target.host_id}

    def known_state(self, result: dict | None) -> str | None:
        return Instance.State.SHUTOFF

    def on_abandoned(self, job: Job) -> None:
        """A worker died mid-move: the database says which host won. Before the switch the
        target's copies go; after it, the source's leftovers. Then the state is read back."""
        super().on_abandoned(job)
        if job.status == Job.Status.CANCELLED and job.started_at is None:
            return
        instance = Instance.objects.select_related("host").filter(pk=job.target_id).first()
        source = Host.objects.filter(pk=job.params.get("source")).first()
        target = Host.objects.filter(pk=job.params.get("host")).first()
        if instance is None or source is None or target is None:
            return
        if instance.host_id == source.pk:
            drop_from, pool_on = target, _Move.pool_for(target)
        elif instance.host_id == target.pk:
            drop_from, pool_on = source, lambda pool: pool
        else:
            return
        uri, winner_uri = connection_uri(drop_from), connection_uri(instance.host)
        try:
            domains.undefine_domain(uri, instance.domain_name)
            for volume in instance.volumes.filter(role__in=DISK_ROLES):
                if migration.storage_shared(winner_uri, volume.pool, uri):
                    continue  # one file seen by both hosts: it is the instance's disk
                storage.delete_volume(uri, pool_on(volume.pool), volume.name)
        except virt.VirtError as exc:
            log.warning(
                "cold migration %s: leftovers on %s not removed: %s", job.id, drop_from, exc
            )
            return
        instance_sync_state(
            instance=instance,
            reason=f"Job {job.id} ({job.kind}) was abandoned; what it left on "
            f"{drop_from.name} was removed.",
        )

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        source = instance.host
        target = Host.objects.filter(pk=job.params["host"]).first()
        if source is None or target is None or source.pk == target.pk:
            raise JobFailed("The source or the target host is gone.", public=True)
        if source.pk != job.params.get("source", source.pk):
            raise JobFailed("The instance moved since the migration was asked.", public=True)
        move = _Move(job, ctx, instance, source, target)
        started = time.monotonic()
        try:
            move.prepare()
            move.copy_disks()
            move.define()
            ctx.check_cancelled()  # the last moment the move can be called off
            move.switch()
        except BaseException as exc:
            move.undo()
            if isinstance(exc, CopyCancelled):
                raise JobCancelled() from None
            if isinstance(exc, (JobCancelled, RolledBack)):
                raise
            raise RolledBack(
                f"The cold migration to {target.name} failed and was undone; the instance "
                f"stays on {source.name}: {exc}",
                public="The migration failed and was undone; the instance was not moved.",
            ) from exc
        leftovers = move.clean_source()
        seconds = round(time.monotonic() - started, 2)
        ctx.progress(
            100,
            f"Moved to {target.name} in {seconds} s",
            public="The instance was moved",
        )
        return {
            "from": source.name,
            "to": target.name,
            "seconds": seconds,
            "volumes": move.copied_summary(),
            "leftovers": leftovers,
        }


class _Move:
    """One cold migration's state: what was made on the target, for the undo."""

    def __init__(self, job, ctx, instance: Instance, source: Host, target: Host):
        self.job, self.ctx, self.instance = job, ctx, instance
        self.source, self.target = source, target
        self.src_uri, self.dst_uri = connection_uri(source), connection_uri(target)
        self.volumes = list(instance.volumes.filter(role__in=DISK_ROLES).order_by("id"))
        self.paths: dict[str, str] = {}  # source file -> target file
        self.made: list[tuple[str, str]] = []  # (pool, name) copied to the target
        self.copied: dict[int, storage.VolumeInfo] = {}  # Volume id -> target volume
        self.shared: dict[str, str | None] = {}  # source pool -> target pool seeing its files
        self.defined = False
        self.switched = False
        self.interval = float(getattr(settings, "MIGRATION_PROGRESS_INTERVAL", 1.0))

    @staticmethod
    def pool_for(target: Host):
        """Where a disk from pool `pool` goes: that pool on the target, or its default."""
        return lambda pool: pool if scheduler.has_pool(target, pool) else target.default_pool

    def target_pool(self, pool: str) -> str:
        return self.pool_for(self.target)(pool)

    def shared_pool(self, pool: str) -> str | None:
        """The target's pool that sees the source pool's very files (shared storage), if any:
        then nothing is copied, and nothing deleted on the source."""
        if pool not in self.shared:
            seen = None
            if migration.storage_shared(self.src_uri, pool, self.dst_uri):
                seen = migration.pool_by_name_or_path(
                    self.dst_uri, pool, storage.pool_path(self.src_uri, pool)
                )
            self.shared[pool] = seen
        return self.shared[pool]

    def prepare(self) -> None:
        self.ctx.progress(
            5,
            f"Checking {self.instance.domain_name} on {self.source.name}",
            public="Preparing the migration",
        )
        name = self.instance.domain_name
        if domains.domain_state(self.src_uri, name) != "shutoff":
            raise JobFailed("The instance must be shut off to be cold-migrated.", public=True)
        if domains.domain_exists(self.dst_uri, name):
            raise JobFailed(f"Host {self.target.name} has a domain {name} already.")
        self.xml = domains.domain_xml_desc(self.src_uri, name, inactive=True)
        self.sources = {}  # Volume id -> VolumeInfo on the source
        for volume in self.volumes:
            info = storage.volume_info(self.src_uri, volume.pool, volume.name)
            self.sources[volume.pk] = info
            if info.backing_path:
                self._bring_image(info.backing_path, same_path=True)
        own = {info.path for info in self.sources.values()}
        for path in disk_files(self.xml):
            if path not in own:
                self.paths[path] = self._bring_image(path, same_path=False)

    def _bring_image(self, path: str, *, same_path: bool) -> str:
        """Make sure the image copy at `path` on the source is on the target; its path there."""
        replica = (
            ImageReplica.objects.select_related("image")
            .filter(host=self.source, path=path, status=ImageReplica.Status.ACTIVE)
            .first()
        )
        if replica is None:
            raise JobFailed(
                f"Disk file {path} on {self.source.name} is no image copy the panel knows."
            )
        if self.shared_pool(replica.pool):
            return path  # the target reads the same file
        pool = self.target_pool(replica.pool)
        self.ctx.progress(
            10,
            f"Copying image {replica.image.name} to {self.target.name}/{pool}",
            public="Copying the image",
        )
        there = image_ensure_replica(image=replica.image, host=self.target, pool=pool, ctx=self.ctx)
        if same_path and there.path != path:
            raise JobFailed(
                f"The image copy the disk rests on is at {path} on {self.source.name} but at "
                f"{there.path} on {self.target.name}: the disk cannot follow it."
            )
        return there.path

    def copy_disks(self) -> None:
        moving = [v for v in self.volumes if not self.shared_pool(v.pool)]
        total = sum(self.sources[v.pk].physical_bytes for v in moving) or 1
        done_before = 0
        last = [0.0, 0.0]  # when progress was last reported, when cancellation was asked

        for volume in self.volumes:
            self.ctx.check_cancelled()
            shared = self.shared_pool(volume.pool)
            if shared:
                storage.pool_refresh(self.dst_uri, shared)
                info = storage.volume_info(self.dst_uri, shared, volume.name)
                self.copied[volume.pk] = info
                self.paths[self.sources[volume.pk].path] = info.path
                self.ctx.log(f"{volume.pool}/{volume.name} is on storage {self.target.name} shares")
                continue
            pool = self.target_pool(volume.pool)
            where = f"{self.target.name}/{pool}"
            self.ctx.progress(
                20 + int(65 * done_before / total),
                f"Copying {volume.pool}/{volume.name} to {where}",
                public="Copying the disks",
            )

            def progress(done: int, size: int, base=done_before, name=volume.name, where=where):
                now = time.monotonic()
                if now - last[0] >= self.interval or done >= size:
                    last[0] = now
                    self.ctx.progress(
                        20 + int(65 * (base + done) / total),
                        f"Copying {name} to {where}: {(base + done) >> 20} of {total >> 20} MiB",
                        public="Copying the disks",
                    )

            def cancelled() -> bool:
                now = time.monotonic()
                if now - last[1] < self.interval:
                    return False
                last[1] = now
                return self.ctx.cancelled()

            info = copy_volume(
                self.src_uri, volume.pool, volume.name,
                self.dst_uri, pool, volume.name,
                fmt=self.sources[volume.pk].format,
                progress=progress, cancelled=cancelled,
            )  # fmt: skip
            # Only after it succeeded: a failed copy removed its own partial volume, and a
            # volume that was there before is not ours to delete.
            self.made.append((pool, volume.name))
            self.copied[volume.pk] = info
            self.paths[self.sources[volume.pk].path] = info.path
            done_before += self.sources[volume.pk].physical_bytes

    def define(self) -> None:
        self.ctx.progress(88, f"Defining the domain on {self.target.name}", public="Defining")
        xml = relocate_domain_xml(self.xml, disk_paths=self.paths)
        domains.define_domain(self.dst_uri, xml)
        self.defined = True

    def switch(self) -> None:
        """The database names the target: from here on the move is done."""
        self.ctx.progress(94, "Recording the new host", public="Recording the move")
        with transaction.atomic():
            for volume in self.volumes:
                info = self.copied[volume.pk]
                Volume.objects.filter(pk=volume.pk).update(
                    host=self.target,
                    pool=info.pool,
                    path=info.path,
                    capacity_bytes=info.capacity_bytes,
                    allocation_bytes=info.allocation_bytes,
                )
            Instance.objects.filter(pk=self.instance.pk).update(host=self.target)
        self.switched = True
        self.instance.host = self.target
        instance_changed.send(sender=Instance, instance=self.instance)

    def undo(self) -> None:
        """Remove what was made on the target (the source was not touched)."""
        if self.switched:
            return
        if self.defined:
            try:
                domains.undefine_domain(self.dst_uri, self.instance.domain_name)
            except virt.VirtError as exc:
                log.warning("undo: domain on %s not undefined: %s", self.target, exc)
                self.ctx.log(f"Could not undefine the domain on {self.target.name}: {exc}")
        for pool, name in self.made:
            try:
                storage.delete_volume(self.dst_uri, pool, name)
            except virt.VirtError as exc:
                log.warning(
                    "undo: volume %s/%s on %s not deleted: %s", pool, name, self.target, exc
                )
                self.ctx.log(f"Could not delete {pool}/{name} on {self.target.name}: {exc}")

    def clean_source(self) -> list[str]:
        """Undefine the domain on the source and delete its volumes; what failed, by name."""
        self.ctx.progress(
            97, f"Removing the instance from {self.source.name}", public="Cleaning up"
        )
        leftovers = []
        try:
            domains.undefine_domain(self.src_uri, self.instance.domain_name)
        except virt.VirtError as exc:
            leftovers.append(f"domain {self.instance.domain_name}: {exc}")
        for volume in self.volumes:  # the rows were updated in the database only
            if self.shared.get(volume.pool):
                continue  # the target's disk is this very file
            try:
                storage.delete_volume(self.src_uri, volume.pool, volume.name)
            except virt.VirtError as exc:
                leftovers.append(f"volume {volume.pool}/{volume.name}: {exc}")
        for line in leftovers:
            self.ctx.log(f"Left on {self.source.name}: {line}")
        return leftovers

    def copied_summary(self) -> list[dict]:
        return [
            {
                "name": info.name,
                "pool": info.pool,
                "capacity_bytes": info.capacity_bytes,
                "allocation_bytes": info.allocation_bytes,
            }
            for info in self.copied.values()
        ]


COLD_MIGRATE = register(ColdMigrate())
