"""Live migration (admins): a running instance moves to another host, peer to peer, with or
without shared storage (its disks are copied along when the target does not see them).

The migration runs in a thread while this job pushes libvirt's job stats as progress and
watches for cancellation (which aborts the libvirt job: the instance keeps running on the
source). Whatever happens, the instance ends up running on exactly one host and the
database names that one: after a failure both hosts are asked where the domain is.

The target's disk copies get their Volume rows (state creating) before libvirt makes them;
after success the source's copies are deleted (not with shared storage: it is the same
file), after a failure the target's half copies are.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cloudpanel import virt
from cloudpanel.errors import Conflict, InvalidInput, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobCancelled, JobContext, JobFailed
from cloudpanel.projects import access
from cloudpanel.virt import domains, migration, storage
from hosts.connection import connection_uri, host_uri
from hosts.models import Host

from .. import placement
from ..models import Instance, Volume
from ..services import instance_sync_state
from ..signals import instance_changed
from .base import InstanceOperation, RolledBack

log = logging.getLogger(__name__)

KIND = "instance.migrate"
MAX_BANDWIDTH_MIB = 100_000
# With post-copy asked, switch once memory has been sent this many times over (the dirty
# pages did not let pre-copy converge by then).
POSTCOPY_AFTER_ITERATION = 3
LIVE_STATES = frozenset({Instance.State.RUNNING, Instance.State.PAUSED})
PUBLIC_FAILURE = "The live migration failed; the instance still runs where it was."


def _flag(value, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (None, "", "0", "false", "off", "no"):
        return False
    if value in ("1", "true", "on", "yes"):
        return True
    raise InvalidInput({field_name: ["true or false."]})


def _bandwidth(value) -> int | None:
    if value in (None, "", 0):
        return None
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise InvalidInput({"bandwidth_mib": ["A whole number of MiB/s."]}) from None
    if not 1 <= value <= MAX_BANDWIDTH_MIB:
        raise InvalidInput({"bandwidth_mib": [f"Between 1 and {MAX_BANDWIDTH_MIB} MiB/s."]})
    return value


def peer_uri(target: Host) -> str:
    """The URI the source's libvirtd opens to reach the target's: the target's own URI as
    stored, without the panel's key file (which only this machine has)."""
    return host_uri(target).uri


def migration_stream_host(target: Host) -> str:
    """Where the target's QEMU listens for the migration stream: the server of its URI as
    the panel's own URI parser read it when the host was registered (loopback for a unix
    socket), never a second reading of the string."""
    return host_uri(target).server or "127.0.0.1"


@dataclass
class Plan:
    """What one migration does, decided just before it starts."""

    src_uri: str
    dst_uri: str
    shared_pools: dict[str, bool]  # source pool -> the target sees the same storage
    dst_pools: dict[str, str]  # source pool -> the target's pool with that name or path
    copy_disks: list[str] = field(default_factory=list)  # disk targets libvirt copies
    copied: list[Volume] = field(default_factory=list)  # source rows copied by libvirt
    precopied: list[Volume] = field(default_factory=list)  # read-only ones copied by us
    planned: list[Volume] = field(default_factory=list)  # target rows of the copies

    @property
    def shared_storage(self) -> bool:
        return not self.copied and not self.precopied


class LiveMigrate(InstanceOperation):
    kind = KIND

    def check(
        self,
        *,
        user,
        target: Instance,
        host: Host | None = None,
        auto_converge=False,
        post_copy=False,
        bandwidth_mib: int | None = None,
    ) -> dict:
        if not access.is_admin(user):
            raise PermissionDenied("Only administrators may migrate instances.")
        params = {
            "auto_converge": _flag(auto_converge, "auto_converge"),
            "post_copy": _flag(post_copy, "post_copy"),
            "bandwidth_mib": _bandwidth(bandwidth_mib),
        }
        if target.current_job_id is None and target.state not in LIVE_STATES:
            raise Conflict(
                f"Instance {target.name} is {target.get_state_display().lower()}; only a "
                "running instance migrates live (a shut-off one moves by cold migration)."
            )
        if target.host is None:
            raise Conflict(f"Instance {target.name} has no host.")
        if target.host.status != Host.Status.ONLINE:
            raise Conflict(
                f"Host {target.host.name} of instance {target.name} is {target.host.status}."
            )
        if target.current_job_id is not None:
            return {**params, "host": host.pk if host else None}  # the job conflict says more
        chosen = placement.migration_target(instance=target, host=host, live=True)
        return {**params, "host": chosen.pk}

    # ---- the worker

    def run(self, job: Job, ctx: JobContext) -> dict | None:
        instance = self.load_instance(job)
        try:
            result = self.act(job, ctx, instance)
        except (JobCancelled, RolledBack):
            self._release(instance, job)  # act settled the instance already
            raise
        except Exception as exc:
            self._finish(instance, job, reason=f"Live migration failed: {exc}")
            raise
        self._settle(instance, job, result.pop("_state"))
        return result

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        source = instance.host
        try:
            target = Host.objects.get(pk=job.params.get("host"))
        except Host.DoesNotExist:
            raise JobFailed("The target host no longer exists", public=PUBLIC_FAILURE) from None
        ctx.progress(2, f"Checking host {target.name}", public="Checking the target")
        problem = placement.compatibility_problem(instance, target, live=True)
        if problem:
            raise JobFailed(
                f"Cannot migrate to host {target.name}: {problem}", public=PUBLIC_FAILURE
            )
        src_uri, dst_uri = connection_uri(source), connection_uri(target)
        if domains.domain_state(src_uri, instance.domain_name) not in LIVE_STATES:
            raise JobFailed("The instance is not running; it cannot migrate live", public=True)
        plan = self._plan(ctx, instance, src_uri, dst_uri)
        request = migration.MigrationRequest(
            name=instance.domain_name,
            target_uri=peer_uri(target),
            migrate_host=migration_stream_host(target),
            copy_disks=tuple(plan.copy_disks),
            shared_storage_unsafe=any(plan.shared_pools.values()),
            auto_converge=job.params.get("auto_converge", False),
            post_copy=job.params.get("post_copy", False),
            bandwidth_mib=job.params.get("bandwidth_mib"),
        )
        how = "with shared storage" if plan.shared_storage else "copying its disks"
        ctx.progress(
            10,
            f"Migrating live to host {target.name} ({how})",
            public="Migrating live",
        )
        started = time.monotonic()
        try:
            last = self._migrate(ctx, src_uri, request)
        except JobCancelled:
            self._recover(ctx, instance, source, target, plan, why="cancelled")
            raise
        except virt.VirtError as exc:
            why = str(exc)
            try:
                virt.ping(dst_uri)
            except virt.VirtError:
                why = f"host {target.name} stopped answering ({exc})"
            self._recover(ctx, instance, source, target, plan, why=why)
            raise RolledBack(
                f"Live migration to host {target.name} failed: {why}", public=PUBLIC_FAILURE
            ) from exc
        wall_ms = int((time.monotonic() - started) * 1000)
        completed = migration.completed_stats(dst_uri, instance.domain_name)
        state = self._switch(instance, source, target, plan)
        self._clean_source(ctx, src_uri, plan)
        stats = completed or last
        memory = stats.memory_processed if stats else 0
        # The copies as the target holds them (the live stats may end before a fast
        # migration is first read; libvirt's completed stats count memory only).
        disk = sum(row.allocation_bytes for row in plan.planned)
        result = {
            "source_host": source.name,
            "target_host": target.name,
            "shared_storage": plan.shared_storage,
            "downtime_ms": stats.downtime_ms if stats else None,
            "bytes": memory + disk,
            "memory_bytes": memory,
            "disk_bytes": disk,
            "iterations": stats.iteration if stats else 0,
            "migration_ms": wall_ms,
            "_state": state,
        }
        ctx.log(
            f"Migrated to host {target.name} in {wall_ms} ms, downtime "
            f"{result['downtime_ms']} ms, {result['bytes']} bytes",
            public=f"Migrated in {wall_ms / 1000:.1f} s",
        )
        return result

    # ---- steps

    def _plan(self, ctx: JobContext, instance: Instance, src_uri: str, dst_uri: str) -> Plan:
        volumes = placement.moving_volumes(instance)
        needs = migration.domain_needs(src_uri, instance.domain_name)
        plan = Plan(src_uri=src_uri, dst_uri=dst_uri, shared_pools={}, dst_pools={})
        for pool in sorted({v.pool for v in volumes}):
            path = storage.pool_path(src_uri, pool)
            dst_pool = migration.pool_by_name_or_path(dst_uri, pool, path)
            if dst_pool is None:
                raise JobFailed(f"The target has no pool '{pool}'", public=PUBLIC_FAILURE)
            plan.dst_pools[pool] = dst_pool
            plan.shared_pools[pool] = migration.storage_shared(src_uri, pool, dst_uri)
        by_path = {v.path: v for v in volumes if v.path}
        for target_dev, path, readonly in needs.disks:
            volume = by_path.get(path)
            if volume is None or plan.shared_pools.get(volume.pool, False):
                continue
            (plan.precopied if readonly else plan.copied).append(volume)
            if not readonly:
                plan.copy_disks.append(target_dev)
        shared = sorted(p for p, s in plan.shared_pools.items() if s)
        ctx.log(
            f"Storage: pools shared with the target: {shared or 'none'}; disks copied: "
            f"{plan.copy_disks or 'none'}"
        )
        for volume in plan.copied + plan.precopied:
            self._clear_leftover(ctx, plan, volume)
        with transaction.atomic():
            for volume in plan.copied + plan.precopied:
                plan.planned.append(
                    Volume.objects.create(
                        host_id=self._target_id(ctx),
                        instance=instance,
                        pool=plan.dst_pools[volume.pool],
                        name=volume.name,
                        role=volume.role,
                        format=volume.format,
                        capacity_bytes=volume.capacity_bytes,
                        disk_target=volume.disk_target,
                    )
                )
        for volume in plan.precopied:
            self._precopy(ctx, plan, volume)
        return plan

    @staticmethod
    def _target_id(ctx: JobContext) -> int:
        return int(ctx.job.params["host"])

    @staticmethod
    def _clear_leftover(ctx: JobContext, plan: Plan, volume: Volume) -> None:
        """A volume of this instance's name on the target is a half copy from an earlier
        failed migration (the names hold the instance's uuid): libvirt would reuse it."""
        dst_pool = plan.dst_pools[volume.pool]
        rows = Volume.objects.filter(
            host_id=ctx.job.params["host"], pool=dst_pool, name=volume.name
        )
        if rows.exclude(instance__isnull=True).exclude(instance=volume.instance_id).exists():
            raise JobFailed(
                f"Volume {dst_pool}/{volume.name} on the target belongs to another instance",
                public=PUBLIC_FAILURE,
            )
        storage.pool_refresh(plan.dst_uri, dst_pool)
        if storage.find_volume_by_name(plan.dst_uri, dst_pool, volume.name) is not None:
            ctx.log(f"Removing leftover volume {dst_pool}/{volume.name} on the target")
            storage.delete_volume(plan.dst_uri, dst_pool, volume.name)
        rows.delete()

    @staticmethod
    def _precopy(ctx: JobContext, plan: Plan, volume: Volume) -> None:
        """Read-only disks (the cloud-init seed) are not copied by libvirt, yet the target
        must have them: copy them first through storage streams."""
        try:
            from cloudpanel.virt.volume_copy import copy_volume
        except ImportError:
            raise JobFailed(
                f"Read-only disk {volume.name} is on storage the target does not see, and "
                "volume copies are not available",
                public=PUBLIC_FAILURE,
            ) from None
        ctx.log(f"Copying read-only disk {volume.pool}/{volume.name} to the target")
        copy_volume(
            plan.src_uri,
            volume.pool,
            volume.name,
            plan.dst_uri,
            plan.dst_pools[volume.pool],
            volume.name,
            fmt=volume.format,
            cancelled=ctx.cancelled,
        )

    def _migrate(
        self, ctx: JobContext, src_uri: str, request: migration.MigrationRequest
    ) -> migration.MigrationStats | None:
        """Run the migration in a thread; push its stats; abort it when the job is
        cancelled. Returns the last stats read; raises JobCancelled or VirtError."""
        errors: list[BaseException] = []

        def work() -> None:
            try:
                migration.migrate(src_uri, request)
            except BaseException as exc:  # handed to the job's thread
                errors.append(exc)

        thread = threading.Thread(target=work, name=f"migrate-{request.name}", daemon=True)
        thread.start()
        interval = float(settings.MIGRATION_PROGRESS_INTERVAL)
        last: migration.MigrationStats | None = None
        cancelled = postcopy = False
        wait = min(interval, 0.25)  # a first reading soon: short migrations show progress too
        while True:
            thread.join(wait)
            wait = interval
            if not thread.is_alive():
                break
            if not cancelled and ctx.cancelled():
                cancelled = True
                ctx.log("Cancel asked: aborting the migration", public="Cancelling")
                migration.abort(src_uri, request.name)
                continue
            if cancelled:
                continue
            try:
                stats = migration.job_stats(src_uri, request.name)
            except virt.VirtError:
                continue  # the domain left the source just now
            if not stats.active:
                continue
            last = stats
            if (
                request.post_copy
                and not postcopy
                and stats.memory_total
                and stats.iteration >= POSTCOPY_AFTER_ITERATION
            ):
                postcopy = True
                try:
                    migration.start_post_copy(src_uri, request.name)
                    ctx.log(f"Switched to post-copy at iteration {stats.iteration}")
                except virt.VirtError as exc:
                    ctx.log(f"Post-copy not started: {exc}")
            self._report(ctx, stats)
        if cancelled or ctx.cancelled():
            if errors or not migration.domain_gone(src_uri, request.name):
                raise JobCancelled()
            # Too late: it completed before the abort reached it.
            ctx.log("The migration completed before it could be aborted")
        if errors:
            exc = errors[0]
            if isinstance(exc, virt.VirtError):
                raise exc
            raise virt.VirtError(str(exc) or type(exc).__name__) from exc
        return last

    @staticmethod
    def _report(ctx: JobContext, stats: migration.MigrationStats) -> None:
        mib = 1024 * 1024
        dirty = stats.dirty_rate * stats.page_size / mib
        step = (
            f"Migrating: {stats.data_processed / mib:.0f} of {stats.data_total / mib:.0f} MiB "
            f"({stats.data_remaining / mib:.0f} MiB left), dirty rate {dirty:.1f} MiB/s, "
            f"iteration {stats.iteration}"
        )
        ctx.job.result = {"migration": stats.as_dict()}
        ctx.job.save(update_fields=["result"])
        ctx.progress(
            10 + int(stats.percent * 0.85), step, public=f"Migrating ({stats.percent:.0f}%)"
        )

    def _switch(self, instance: Instance, source: Host, target: Host, plan: Plan) -> str:
        """The domain runs on the target: the database says so, in one transaction."""
        migration.refresh_pools(plan.dst_uri, plan.dst_pools.values())
        state = domains.domain_state(plan.dst_uri, instance.domain_name)
        with transaction.atomic():
            moved = {v.pk for v in plan.copied + plan.precopied}
            for volume in placement.moving_volumes(instance):
                if volume.pk in moved:
                    continue  # the source's copy, removed after the switch
                Volume.objects.filter(pk=volume.pk).update(
                    host=target, pool=plan.dst_pools.get(volume.pool, volume.pool)
                )
            Volume.objects.filter(pk__in=moved).update(instance=None)
            for row in plan.planned:
                info = storage.find_volume_by_name(plan.dst_uri, row.pool, row.name)
                if info is not None:
                    row.path = info.path
                    row.capacity_bytes = info.capacity_bytes
                    row.allocation_bytes = info.allocation_bytes
                row.state = Volume.State.READY
                row.save(update_fields=["path", "capacity_bytes", "allocation_bytes", "state"])
            Instance.objects.filter(pk=instance.pk).update(host=target, updated_at=timezone.now())
        instance.host = target
        return state

    @staticmethod
    def _clean_source(ctx: JobContext, src_uri: str, plan: Plan) -> None:
        """libvirt's undefinesource leaves the copied disks behind on the source."""
        for volume in plan.copied + plan.precopied:
            try:
                storage.delete_volume(src_uri, volume.pool, volume.name)
                volume.delete()
            except virt.VirtError as exc:
                ctx.log(f"Source volume {volume.pool}/{volume.name} not removed: {exc}")

    def _recover(
        self,
        ctx: JobContext,
        instance: Instance,
        source: Host,
        target: Host,
        plan: Plan,
        *,
        why: str,
    ) -> None:
        """After a failed or cancelled migration: find where the domain runs, make the
        database say so, and remove the half copies on the host it does not run on."""
        where = locate(instance, source, target)
        if where == "target":
            ctx.log(f"The domain runs on host {target.name} despite the error ({why})")
            state = self._switch(instance, source, target, plan)
            self._clean_source(ctx, plan.src_uri, plan)
            Instance.objects.filter(pk=instance.pk).update(state=state, state_reason="")
        else:
            _drop_target_copies(ctx, plan)
            reason = "" if why == "cancelled" else f"Live migration failed: {why}"
            instance_sync_state(instance=instance, reason=reason)
        instance.refresh_from_db()
        instance_changed.send(sender=Instance, instance=instance)

    # ---- a job that died half-way

    def on_abandoned(self, job: Job) -> None:
        instance = Instance.objects.select_related("host").filter(pk=job.target_id).first()
        target = Host.objects.filter(pk=job.params.get("host")).first()
        if instance is None or target is None or instance.host is None:
            return super().on_abandoned(job)
        try:
            where = locate(instance, instance.host, target)
        except virt.VirtError:
            return super().on_abandoned(job)
        planned = Volume.objects.filter(instance=instance, host=target, state=Volume.State.CREATING)
        if where == "target":
            copied = set(planned.values_list("name", flat=True))
            with transaction.atomic():
                on_source = Volume.objects.filter(instance=instance, host=instance.host)
                on_source.filter(name__in=copied).update(instance=None)  # left to clean
                on_source.exclude(name__in=copied).update(host=target)  # shared storage
                planned.update(state=Volume.State.READY)
                Instance.objects.filter(pk=instance.pk).update(host=target)
        else:
            for row in planned:
                try:
                    storage.delete_volume(connection_uri(target), row.pool, row.name)
                except virt.VirtError:
                    continue  # left for reconcile: the row says it is being created
                row.delete()
        Instance.objects.filter(pk=job.target_id, current_job_id=job.id).update(current_job=None)
        instance.refresh_from_db()
        instance_sync_state(instance=instance, reason=f"Migration job {job.id} was abandoned")


def locate(instance: Instance, source: Host, target: Host) -> str:
    """Which host runs the domain now: "target" when it is active there (the source then
    holds at most a stopped leftover), else "source"."""
    try:
        if domains.domain_state(connection_uri(target), instance.domain_name) in LIVE_STATES:
            return "target"
    except virt.VirtError:
        pass  # not there, or the target is gone
    return "source"


def _drop_target_copies(ctx: JobContext, plan: Plan) -> None:
    """Remove the half-copied disks (and their rows) from the target."""
    for row in plan.planned:
        try:
            storage.pool_refresh(plan.dst_uri, row.pool)
            storage.delete_volume(plan.dst_uri, row.pool, row.name)
        except virt.VirtError as exc:
            # The target is unreachable: the row stays, no longer the instance's, so the
            # host lists the leftover (and the next migration removes it first).
            ctx.log(f"Half copy {row.pool}/{row.name} on the target not removed: {exc}")
            Volume.objects.filter(pk=row.pk).update(instance=None)
            continue
        row.delete()


LIVE_MIGRATE = register(LiveMigrate())
