"""Rebuild a host-down instance on another host from its newest disk mirror or backup.

The root disk becomes a fresh volume in the target's default pool, copied from the mirror or
backup (a shared pool the target sees: copied there by libvirt; else streamed from the copy's
host while it is online). The mirror or backup itself stays as it was: it is still a copy of
the disk, should the rebuilt disk turn out wrong, and its rows keep their meaning. The domain
is defined from the instance's recorded spec (flavor, image, NIC and MAC, cloud-init seed) as
create builds it, then started. Only then does the instance's row name the new host.

The data loss window (the copy's age, see instances/hostdown.py) is shown before and
recorded in the job's result. The lost host's domain and volumes stay where they are: if
that host returns, reconcile lists the domain as a leftover to clean.
"""

from __future__ import annotations

import logging
import time

from django.utils import timezone

from cloudpanel.errors import Conflict, InvalidInput, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobCancelled, JobContext, JobFailed
from cloudpanel.projects import access
from cloudpanel.virt import VirtError, domain_xml, domains, storage
from hosts.connection import connection_uri
from hosts.models import Host
from hosts.selectors import host_list_with_allocation

from .. import hostdown, scheduler
from ..models import DiskMirror, Instance, Volume
from ..volumes import volume_plan, volume_ready, volume_remove
from .base import InstanceOperation, RolledBack, wait_for
from .create import CREATE, disk_layout, domain_spec, random_mac
from .power import START_TIMEOUT

log = logging.getLogger(__name__)

SOURCES = ("mirror", "backup")


def _require_admin(user) -> None:
    if not access.is_admin(user):
        raise PermissionDenied("Only administrators can rebuild instances.")


def source_candidates(
    instance: Instance, source: str | None = None, source_id: int | None = None
) -> list[hostdown.RecoverySource]:
    """The copies asked for (a kind, an id), newest first."""
    if source is not None and source not in SOURCES:
        raise InvalidInput({"source": [f"One of: {', '.join(SOURCES)}."]})
    candidates = hostdown.recovery_sources(instance)
    if source is not None:
        candidates = [c for c in candidates if c.source == source]
    if source_id is not None:
        candidates = [c for c in candidates if c.id == int(source_id)]
    if not candidates:
        what = f"{source} {source_id}" if source_id is not None else (source or "mirror or backup")
        raise Conflict(
            f"Instance {instance.name} has no usable {what} to rebuild from (a mirror must be "
            "mirrored or stopped, a backup ready)."
        )
    return candidates


def choose_source(
    instance: Instance, source: str | None = None, source_id: int | None = None
) -> hostdown.RecoverySource:
    return source_candidates(instance, source, source_id)[0]


def choose(
    instance: Instance,
    source: str | None = None,
    source_id: int | None = None,
    host: Host | None = None,
) -> tuple[hostdown.RecoverySource, Host]:
    """The newest copy (of those asked for) that a host can be rebuilt from, and that host."""
    reasons = []
    for copy in source_candidates(instance, source, source_id):
        try:
            return copy, choose_host(instance, copy, host)
        except Conflict as exc:
            reasons.append(f"{copy.source} {copy.id}: {exc}")
    raise Conflict(" ".join(reasons))


def choose_host(instance: Instance, copy: hostdown.RecoverySource, host: Host | None) -> Host:
    """A host other than the lost one, with room under the scheduler's rules, that can reach
    the copy (sees its file, or can have it streamed)."""
    need = scheduler.Need.of(instance.flavor)
    candidates = host_list_with_allocation().exclude(pk=instance.host_id).order_by("name")
    if host is not None:
        if host.pk == instance.host_id:
            raise InvalidInput(
                {"host": [f"Host {host.name} is the instance's lost host; choose another."]}
            )
        candidates = candidates.filter(pk=host.pk)
    reasons, streamed = [], None
    for candidate in candidates:
        why = scheduler.why_not(candidate, need)
        if why is None:
            how = hostdown.reach(copy, candidate)
            if how == "shared":
                return candidate
            if how == "stream":
                streamed = streamed or candidate
                continue
            why = (
                f"host {candidate.name} does not see {copy.volume.pool}/{copy.volume.name} "
                f"and its host {copy.volume.host.name} is {copy.volume.host.status}"
            )
        reasons.append(why)
    if streamed is not None:
        return streamed
    detail = "; ".join(reasons) or "there is no other host"
    raise Conflict(f"No host can rebuild instance {instance.name}: {detail}.")


def create_params(instance: Instance) -> dict:
    """What the instance was created with (network, seed identity): its create job's params."""
    job = (
        Job.objects.filter(
            kind=CREATE.kind, target_type=Job.TargetType.INSTANCE, target_id=instance.pk
        )
        .order_by("id")
        .first()
    )
    return dict(job.params) if job is not None else {}


class _CreateParams:
    """Stands for the create job where create's helpers read `job.params`."""

    def __init__(self, params: dict):
        self.params = params


class Rebuild(InstanceOperation):
    kind = "instance.rebuild"

    def check(
        self,
        *,
        user,
        target: Instance,
        source: str | None = None,
        source_id: int | None = None,
        host: Host | None = None,
    ) -> dict:
        _require_admin(user)
        if target.current_job_id is None and target.state != Instance.State.HOST_DOWN:
            raise Conflict(
                f"Instance {target.name} is {target.get_state_display().lower()}; only a "
                "host-down instance is rebuilt (its host stayed offline past the grace period)."
            )
        if source_id not in (None, "") and not str(source_id).isdigit():
            raise InvalidInput({"source_id": ["A whole number."]})
        copy, chosen = choose(target, source or None, int(source_id) if source_id else None, host)
        return {
            "source": copy.source,
            "source_id": copy.id,
            "host": chosen.pk,
            "host_name": chosen.name,
            "from_host": target.host_id,
            "window_seconds": copy.window_seconds(),
        }

    def known_state(self, result: dict | None) -> str | None:
        return (result or {}).get("state")

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        lost = instance.host
        target = Host.objects.filter(pk=job.params["host"]).first()
        if target is None:
            raise JobFailed("The target host is gone")
        if lost is not None and lost.pk != job.params.get("from_host"):
            raise JobFailed("The instance moved since the rebuild was asked")
        if instance.state != Instance.State.HOST_DOWN:
            raise JobFailed(f"The instance is {instance.state} now, not host-down")
        copy = choose_source(instance, job.params["source"], job.params["source_id"])
        now = timezone.now()
        window = copy.window_seconds(now)
        ctx.log(
            f"rebuilding from {copy.source} {copy.id} ({copy.volume.pool}/{copy.volume.name} "
            f"on {copy.volume.host.name}): data loss window {window} s ({copy.basis})"
        )
        build = _Build(job, ctx, instance, target, copy)
        started = time.monotonic()
        try:
            build.disk()
            build.seed()
            build.define_and_start()
            build.switch(lost)
        except BaseException as exc:
            leftovers = build.undo()
            instance.host = lost  # the row was never switched
            note = f" (could not remove: {', '.join(leftovers)})" if leftovers else ""
            reason = f"Rebuild on {target.name} failed and was undone{note}: {exc}"
            Instance.objects.filter(pk=instance.pk).update(
                state_reason=f"{instance.state_reason} {reason}".strip()[:4000]
            )
            if isinstance(exc, Exception) and not isinstance(exc, (RolledBack, JobCancelled)):
                raise RolledBack(reason) from exc
            raise
        seconds = round(time.monotonic() - started, 2)
        ctx.progress(100, f"Rebuilt on {target.name} in {seconds} s; data loss window {window} s")
        return {
            "state": build.state,
            "source": copy.source,
            "source_id": copy.id,
            "source_volume": copy.as_dict(now)["volume"],
            "copy_of": copy.copy_of.isoformat() if copy.copy_of else None,
            "window_seconds": window,
            "window_basis": copy.basis,
            "copied_by": build.copied_by,
            "from_host": lost.pk if lost else None,
            "from_host_name": lost.name if lost else "",
            "to_host": target.pk,
            "to_host_name": target.name,
            "seconds": seconds,
        }


class _Build:
    """The steps of one rebuild, and what each made (undone on failure)."""

    def __init__(self, job: Job, ctx: JobContext, instance: Instance, target: Host, copy):
        self.job, self.ctx, self.instance, self.target, self.copy = job, ctx, instance, target, copy
        self.uri = connection_uri(target)
        self.pool = target.default_pool
        self.made: dict = {"domain": False, "volumes": []}
        self.params = create_params(instance)
        self.root: Volume | None = None
        self.seed_path: str | None = None
        self.copied_by = ""
        self.state = ""

    def _plan(self, **kwargs) -> Volume:
        # volume_plan records the volume on the instance's host: the target, for these.
        on_target = Instance(pk=self.instance.pk, host=self.target)
        volume = volume_plan(instance=on_target, **kwargs)
        self.made["volumes"].append(volume)
        return volume

    def disk(self) -> None:
        src = self.copy.volume
        name = f"{self.instance.domain_name}-disk0.qcow2"
        self.ctx.progress(
            10,
            f"Copying {self.copy.source} {src.pool}/{src.name} to {self.pool}/{name} on "
            f"{self.target.name}",
        )
        self.root = self._plan(
            pool=self.pool, name=name, role=Volume.Role.ROOT, capacity=src.capacity_bytes
        )
        if hostdown.visible_on(src, self.target):
            # The target sees the file (shared pool): libvirt copies it into a standalone
            # qcow2, a full copy whatever the source's format.
            info = storage.clone_volume(
                self.uri, self.pool, src.name, name, fmt="qcow2", source_pool=src.pool
            )
            self.copied_by = f"libvirt copy on {self.target.name} from pool {src.pool}"
        else:
            from cloudpanel.virt.volume_copy import copy_volume

            if src.host.status != Host.Status.ONLINE:
                raise JobFailed(
                    f"Host {self.target.name} does not see {src.pool}/{src.name} and its host "
                    f"{src.host.name} is {src.host.status}"
                )
            info = copy_volume(
                connection_uri(src.host), src.pool, src.name, self.uri, self.pool, name,
                fmt=src.format or "qcow2", cancelled=self.ctx.cancelled,
            )  # fmt: skip
            self.copied_by = f"stream from {src.host.name}"
        if info.backing_path:
            raise JobFailed(
                f"The copy of {src.name} still depends on {info.backing_path}: not a full copy"
            )
        volume_ready(self.root, info)
        self.ctx.check_cancelled()

    def seed(self) -> None:
        identity = self.params.get("seed")
        if not identity:
            return
        self.ctx.progress(50, f"Writing the cloud-init seed to pool {self.pool}")
        on_target = Instance(
            pk=self.instance.pk,
            uuid=self.instance.uuid,
            domain_name=self.instance.domain_name,
            host=self.target,
            image=self.instance.image,
        )
        self.seed_path = CREATE._make_seed(self.uri, self.pool, on_target, identity, self.made).path

    def define_and_start(self) -> None:
        instance, target, image = self.instance, self.target, self.instance.image
        # No installer ISO: it stayed with the lost host, and the disk is what was installed.
        bus = (image.disk_bus if image is not None else "") or "virtio"
        disks = disk_layout(self.root.path, bus, seed=self.seed_path)
        network, notes = CREATE._network(_CreateParams(self.params), self.ctx, self.uri, target)
        mac = instance.mac_address or random_mac()
        spec = domain_spec(instance, target, disks=disks, mac=mac, network=network)
        self.ctx.progress(
            70, f"Defining and starting domain {instance.domain_name} on {target.name}"
        )
        domains.define_domain(self.uri, domain_xml.build_domain(spec))
        self.made["domain"] = True
        domains.start_domain(self.uri, instance.domain_name)
        waited = wait_for(self.ctx, self.uri, instance.domain_name, {"running"}, START_TIMEOUT)
        if not waited:
            raise JobFailed(
                f"The domain did not reach running within {START_TIMEOUT:g} s ({waited.state})"
            )
        self.state = waited.state
        self.mac = spec.nics[0].mac
        self.notes = notes

    def switch(self, lost: Host | None) -> None:
        """The row names the new host and its volumes; the lost host's rows stay (without
        the instance) as a record of what is left there."""
        instance = self.instance
        instance.host = self.target
        instance.mac_address = self.mac
        instance.state_reason = ""
        Instance.objects.filter(pk=instance.pk).update(
            host=self.target, mac_address=self.mac, updated_at=timezone.now()
        )
        if lost is not None:
            Volume.objects.filter(
                instance=instance,
                host=lost,
                role__in=(Volume.Role.ROOT, Volume.Role.DATA, Volume.Role.CDROM),
            ).update(instance=None)
        # The mirrors' block jobs died with the host: they are copies now, no longer in sync.
        for mirror in DiskMirror.objects.filter(instance=instance, state__in=DiskMirror.ACTIVE):
            mirror.state = DiskMirror.State.STOPPED
            mirror.synced_at = mirror.synced_at or (lost.last_seen_at if lost else None)
            mirror.error = f"its host {lost.name if lost else '?'} was lost; instance rebuilt"
            mirror.save(update_fields=["state", "synced_at", "error", "updated_at"])

    def undo(self) -> list[str]:
        leftovers = []
        if self.made["domain"]:
            try:
                if domains.domain_exists(self.uri, self.instance.domain_name):
                    try:
                        domains.destroy_domain(self.uri, self.instance.domain_name)
                    except VirtError:
                        pass  # not running
                    domains.undefine_domain(self.uri, self.instance.domain_name)
            except VirtError as exc:
                leftovers.append(f"domain {self.instance.domain_name} ({exc})")
        for volume in self.made["volumes"]:
            try:
                volume_remove(self.uri, volume)
            except VirtError as exc:
                leftovers.append(f"volume {volume.name} ({exc})")
        return leftovers


REBUILD = register(Rebuild())
