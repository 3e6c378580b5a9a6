"""A lost host: its instances become host-down; they are rebuilt elsewhere from a mirror or
a backup (operations/rebuild.py), or they come back with their host.

The receivers here are connected when this module is imported (operations/rebuild.py does,
and the instances app loads the operations at start).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from cloudpanel import virt
from cloudpanel.audit.decorators import audited
from cloudpanel.audit.services import audit_record
from cloudpanel.jobs.models import Job
from cloudpanel.virt import storage
from hosts.connection import connection_uri
from hosts.models import Host
from hosts.services import host_lost
from hosts.signals import host_changed

from .models import Backup, DiskMirror, Instance, Volume
from .signals import instance_changed

log = logging.getLogger(__name__)

REBUILD_KIND = "instance.rebuild"
# A job owns these, or they are gone already.
_NOT_MARKED = (Instance.State.HOST_DOWN, Instance.State.BUILDING, Instance.State.DELETING)


def mark_host_down(*, host: Host, since: datetime | None) -> list[int]:
    """Mark the host's instances host-down (those no job is working on: the next run takes
    the rest once their job ends). Returns their ids."""
    seen = f"{since:%Y-%m-%d %H:%M:%S %Z}" if since else "never"
    marked = []
    candidates = Instance.objects.filter(host=host, current_job__isnull=True).exclude(
        state__in=_NOT_MARKED
    )
    for instance in candidates:
        reason = (
            f"Host {host.name} has been {host.status} since {seen} (last seen); "
            f"the instance was {instance.state}."
        )
        # Conditional: a job that started meanwhile wins.
        if Instance.objects.filter(
            pk=instance.pk, current_job__isnull=True, state=instance.state
        ).update(state=Instance.State.HOST_DOWN, state_reason=reason, updated_at=timezone.now()):
            audit_record(
                action="instance.host_down", target=instance, result="failed",
                params={"host": host.pk, "from": instance.state},
                message="The server this instance runs on is unreachable.",
            )  # fmt: skip
            instance.state, instance.state_reason = Instance.State.HOST_DOWN, reason
            instance_changed.send(sender=Instance, instance=instance)
            marked.append(instance.pk)
    if marked:
        audit_record(
            action="host.down", target=host, result="failed",
            message=f"Host {host.name} has been {host.status} since {seen} (last seen).",
            params={"status": host.status, "instances": marked},
        )  # fmt: skip
    return marked


@receiver(host_lost, dispatch_uid="instances.hostdown.on_host_lost")
def on_host_lost(sender, host: Host, since=None, **kwargs) -> int:
    return len(mark_host_down(host=host, since=since))


def rebuilt_away_from(host: Host) -> bool:
    """Has any instance been rebuilt from this host onto another?"""
    return Job.objects.filter(
        kind=REBUILD_KIND, status=Job.Status.SUCCEEDED, result__from_host=host.pk
    ).exists()


@receiver(host_changed, dispatch_uid="instances.hostdown.on_host_back")
def on_host_back(sender, host: Host, **kwargs) -> None:
    """A host back online: its host-down instances take their domains' real state, and the
    domains of instances rebuilt elsewhere are listed as leftovers (reconcile), at once
    rather than at the next periodic reconcile. Nothing is started."""
    if host.status != Host.Status.ONLINE:
        return
    if not (
        Instance.objects.filter(host=host, state=Instance.State.HOST_DOWN).exists()
        or rebuilt_away_from(host)
    ):
        return
    from .reconcile import ReconcileReport, reconcile_host

    try:
        reconcile_host(host, ReconcileReport())
    except virt.VirtError as exc:  # the periodic reconcile tries again
        log.warning("reconcile of returning host %s failed: %s", host.name, exc)
    except Exception:  # never fail the health check that announced the host
        log.exception("reconcile of returning host %s failed", host.name)


# --- what an instance can be rebuilt from -------------------------------------------------


@dataclass
class RecoverySource:
    """A copy of an instance's root disk, with the data a rebuild from it would lose."""

    source: str  # "mirror" or "backup"
    id: int
    volume: Volume
    copy_of: datetime | None  # when the copy last equalled the disk
    basis: str  # how copy_of was found, for a person

    def window_seconds(self, now: datetime | None = None) -> float | None:
        if self.copy_of is None:
            return None
        return max(0.0, ((now or timezone.now()) - self.copy_of).total_seconds())

    def as_dict(self, now: datetime | None = None) -> dict:
        return {
            "source": self.source,
            "id": self.id,
            "copy_of": self.copy_of.isoformat() if self.copy_of else None,
            "window_seconds": self.window_seconds(now),
            "basis": self.basis,
            "volume": {
                "host": self.volume.host_id,
                "host_name": self.volume.host.name,
                "pool": self.volume.pool,
                "name": self.volume.name,
                "path": self.volume.path,
                "format": self.volume.format,
            },
        }


def recovery_sources(instance: Instance) -> list[RecoverySource]:
    """The instance's usable mirrors and ready backups of its root disk, newest copy first."""
    sources = []
    mirrors = (
        DiskMirror.objects.filter(
            instance=instance,
            state__in=(DiskMirror.State.MIRRORED, DiskMirror.State.STOPPED),
            volume__isnull=False,
            volume__state=Volume.State.READY,
        )
        .filter(Q(disk_target="vda") | Q(disk_target=""))
        .select_related("volume__host")
    )
    last_seen = instance.host.last_seen_at if instance.host else None
    for mirror in mirrors:
        if mirror.state == DiskMirror.State.MIRRORED:
            # In sync until the host died: the loss is what it wrote after it was last seen.
            copy_of, basis = last_seen, "mirrored until the host was last seen"
            if mirror.synced_at and (copy_of is None or mirror.synced_at > copy_of):
                copy_of = mirror.synced_at
        else:
            copy_of, basis = mirror.synced_at, "mirror stopped: in sync until then"
        sources.append(RecoverySource("mirror", mirror.pk, mirror.volume, copy_of, basis))
    backups = Backup.objects.filter(instance=instance, state=Backup.State.READY)
    for backup in backups:
        volume = _backup_root(backup)
        if volume is not None:
            sources.append(
                RecoverySource("backup", backup.pk, volume, backup.completed_at, "backup taken")
            )
    oldest = datetime.min.replace(tzinfo=timezone.get_current_timezone())
    sources.sort(key=lambda s: s.copy_of or oldest, reverse=True)
    return sources


def _backup_root(backup: Backup) -> Volume | None:
    volumes = list(
        Volume.objects.filter(backup=backup, state=Volume.State.READY)
        .select_related("host")
        .order_by("id")
    )
    return next((v for v in volumes if v.disk_target in ("vda", "")), None) or (
        volumes[0] if volumes else None
    )


def pool_entry(host: Host, pool: str) -> dict | None:
    return next(
        (p for p in host.storage_pools or [] if p.get("name") == pool and p.get("active")), None
    )


def visible_on(volume: Volume, host: Host) -> bool:
    """Does `host` see the volume's file itself: a pool of the same name whose path holds the
    file (shared storage)? Asked of the host's libvirt: a pool of the same name and path may
    still be another directory (each lab host's 'default')."""
    if volume.host_id == host.pk:
        return True
    if pool_entry(host, volume.pool) is None or not volume.path:
        return False
    uri = connection_uri(host)
    try:
        storage.pool_refresh(uri, volume.pool)
        found = storage.find_volume_by_name(uri, volume.pool, volume.name)
    except virt.VirtError:
        return False
    return found is not None and found.path == volume.path


def reach(source: RecoverySource, host: Host) -> str | None:
    """How `host` gets at the copy: "shared" (it sees the file), "stream" (copied from the
    copy's host, which is online), or None."""
    if visible_on(source.volume, host):
        return "shared"
    if source.volume.host.status == Host.Status.ONLINE:
        return "stream"
    return None


def recovery_overview(instance: Instance) -> dict:
    """What the recovery API and card show: each candidate copy with its data loss window
    and the host a rebuild from it would use (or why none can)."""
    from cloudpanel.errors import DomainError, page_message

    from .operations.rebuild import choose_host

    now = timezone.now()
    host = instance.host
    sources = []
    for copy in recovery_sources(instance):
        row = copy.as_dict(now)
        try:
            target = choose_host(instance, copy, None)
            row.update(target_host=target.pk, target_host_name=target.name, problem="")
        except DomainError as exc:
            row.update(target_host=None, target_host_name="", problem=page_message(exc))
        sources.append(row)
    return {
        "instance": instance.pk,
        "state": instance.state,
        "host_down": instance.state == Instance.State.HOST_DOWN,
        "host": host.pk if host else None,
        "host_name": host.name if host else "",
        "host_status": host.status if host else "",
        "host_last_seen_at": host.last_seen_at.isoformat() if host and host.last_seen_at else None,
        "sources": sources,
    }


# --- leftovers -------------------------------------------------------------------------


@audited("host.leftover_remove", target="host")
def leftover_remove(*, host: Host, domain_name: str) -> dict:
    """Remove a leftover domain from `host` (one of an instance that lives elsewhere now),
    with the volumes of it the panel recorded there when the instance moved away (rows of no
    instance). Anything else is refused: this never touches a managed domain."""
    from cloudpanel.errors import Conflict, HostUnavailable, NotFound
    from cloudpanel.virt import domains

    if host.status != Host.Status.ONLINE:
        raise HostUnavailable(f"Host {host.name} is {host.status}")
    uri = connection_uri(host)
    listed = {d.name: d for d in virt.list_domains(uri)}
    dom = listed.get(domain_name)
    if dom is None:
        raise NotFound(f"Host {host.name} has no domain {domain_name}.")
    owner = Instance.objects.filter(uuid=dom.uuid).exclude(host=host).first()
    if owner is None or Instance.objects.filter(host=host, domain_name=domain_name).exists():
        raise Conflict(f"Domain {domain_name} on {host.name} is not a leftover.")
    details = domains.domain_details(uri, domain_name)
    if details.active:
        domains.destroy_domain(uri, domain_name)
    domains.undefine_domain(uri, domain_name)
    removed = []
    paths = {d.path for d in details.disks}
    # Rows of no instance and no backup (a backup outlives its instance: its copies stay).
    leftover_rows = Volume.objects.filter(
        host=host, instance__isnull=True, backup__isnull=True, path__in=paths
    )
    for row in leftover_rows:
        storage.delete_volume(uri, row.pool, row.name)
        removed.append(f"{row.pool}/{row.name}")
        row.delete()
    Host.objects.filter(pk=host.pk).update(
        unmanaged_domains=[d for d in host.unmanaged_domains or [] if d.get("name") != domain_name]
    )
    log.info("leftover %s of instance %s removed from %s", domain_name, owner.pk, host.name)
    return {"domain": domain_name, "instance": owner.pk, "volumes": removed}
