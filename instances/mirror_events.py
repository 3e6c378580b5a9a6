"""What libvirt says about a disk mirror, applied to its DiskMirror row.

Three ways in: the watcher's block-job events (`on_block_job`), the instance's state changes
(`instance_changed`: a domain that stops takes its block copy with it, and libvirt sends no
block-job event for that, so a shut-off, crashed or vanished instance's active mirrors are
read back here), and reads of the mirror list (`mirrors_refresh`, which also keeps
`synced_at` fresh while the copy stays in sync).

While one of the mirror operations runs on the instance, it owns the rows: events and
refreshes leave them alone (the operation reads libvirt itself).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from cloudpanel.virt import VirtError, blockjobs, storage
from hosts.connection import connection_uri
from hosts.models import Host

from .models import DiskMirror, Instance, Volume
from .signals import instance_changed

log = logging.getLogger(__name__)

MIRROR_KINDS = ("instance.mirror", "instance.mirror-pivot", "instance.mirror-stop")
# A domain in these states has no block job any more.
_STOPPED = (Instance.State.SHUTOFF, Instance.State.CRASHED, Instance.State.MISSING)


def mirror_job_running(instance: Instance) -> bool:
    job = instance.current_job if instance.current_job_id else None
    return job is not None and job.kind in MIRROR_KINDS and job.is_active


def _announce(instance: Instance) -> None:
    instance_changed.send(sender=Instance, instance=instance)


def mirror_fail(mirror: DiskMirror, error: str, *, uri: str | None) -> None:
    """The mirror is of no use: record why and remove its volume (best effort: a host that
    does not answer keeps the file, and the row then stays for delete)."""
    volume = mirror.volume
    if volume is not None and uri:
        try:
            storage.delete_volume(uri, volume.pool, volume.name)
        except VirtError as exc:
            log.info("mirror volume %s not removed: %s", volume, exc)
        else:
            volume.delete()
            mirror.volume = None
    mirror.state, mirror.error = DiskMirror.State.FAILED, error[:2000]
    mirror.save(update_fields=["state", "error", "volume", "updated_at"])


def mirror_apply_pivot(mirror: DiskMirror, *, uri: str, old: Volume | None) -> None:
    """The domain now runs on the mirror: it becomes the disk's volume, the old one goes."""
    volume = mirror.volume
    with transaction.atomic():
        if volume is not None:
            volume.role = old.role if old is not None else Volume.Role.ROOT
            volume.disk_target = mirror.disk_target
            volume.save(update_fields=["role", "disk_target"])
        mirror.state, mirror.error = DiskMirror.State.PIVOTED, ""
        mirror.synced_at = timezone.now()
        mirror.save(update_fields=["state", "error", "synced_at", "updated_at"])
    if old is not None and (volume is None or old.pk != volume.pk):
        try:
            storage.delete_volume(uri, old.pool, old.name)
        except VirtError as exc:  # no longer used by the domain: delete can remove it later
            log.warning("old volume %s of %s not removed: %s", old, mirror.instance, exc)
        else:
            old.delete()


def volume_at(instance: Instance, path: str, disk: str) -> Volume | None:
    """The instance's volume the domain's disk uses now (by path; the root volume for vda
    when no path matches)."""
    volumes = list(instance.volumes.exclude(role=Volume.Role.MIRROR))
    found = next((v for v in volumes if path and v.path == path), None)
    if found is None:
        found = next((v for v in volumes if v.disk_target == disk), None)
    if found is None and disk == "vda":
        found = next((v for v in volumes if v.role == Volume.Role.ROOT), None)
    return found


def _refresh_one(instance: Instance, mirror: DiskMirror, uri: str) -> bool:
    """Bring one active mirror up to date with libvirt; True when its state changed."""
    status = blockjobs.copy_status(uri, instance.domain_name, mirror.disk_target)
    path = mirror.volume.path if mirror.volume is not None else ""
    if status is not None and (not status.destination or status.destination == path):
        if status.ready:
            changed = mirror.state != DiskMirror.State.MIRRORED
            mirror.state, mirror.synced_at = DiskMirror.State.MIRRORED, timezone.now()
            mirror.save(update_fields=["state", "synced_at", "updated_at"])
            return changed
        return False  # still converging (a ready job stays ready until it ends)
    # No copy job any more. Pivoted behind the panel's back (virsh blockjob --pivot)?
    try:
        source = blockjobs.disk_source(uri, instance.domain_name, mirror.disk_target)
    except VirtError:
        source = ""
    if path and source == path:
        old = next(
            (
                v
                for v in instance.volumes.exclude(pk=mirror.volume_id)
                if v.disk_target == mirror.disk_target
                or (mirror.disk_target == "vda" and v.role == Volume.Role.ROOT)
            ),
            None,
        )
        mirror_apply_pivot(mirror, uri=uri, old=old)
        return True
    why = (
        f"the instance is {instance.get_state_display().lower()}"
        if instance.state in _STOPPED
        else "the block job is gone"
    )
    mirror_fail(
        mirror,
        f"Mirroring of {mirror.disk_target} ended outside the panel ({why}): the block copy "
        "dies with the domain; start a new mirror once the instance runs.",
        uri=uri,
    )
    return True


def mirrors_refresh(instance: Instance) -> bool:
    """Read the instance's active mirrors back from libvirt (cheap: one block-job query per
    mirror). Returns whether any changed state; announces the instance then."""
    if instance.host is None or instance.state == Instance.State.HOST_DOWN:
        return False
    if instance.host.status != Host.Status.ONLINE or mirror_job_running(instance):
        return False
    active = list(instance.mirrors.filter(state__in=DiskMirror.ACTIVE).select_related("volume"))
    if not active:
        return False
    uri = connection_uri(instance.host)
    changed = False
    for mirror in active:
        try:
            changed |= _refresh_one(instance, mirror, uri)
        except VirtError as exc:
            log.info("mirror %s of %s not refreshed: %s", mirror.pk, instance, exc)
    if changed:
        _announce(instance)
    return changed


def mirror_list(instance: Instance, *, refresh: bool = True) -> list[DiskMirror]:
    """The instance's mirrors, newest first; active ones read back from libvirt first (that
    keeps synced_at fresh while they stay in sync)."""
    if refresh:
        try:
            mirrors_refresh(instance)
        except VirtError as exc:
            log.info("mirrors of %s not refreshed: %s", instance, exc)
    return list(instance.mirrors.select_related("volume"))


def on_block_job(instance, host, uri: str, event) -> None:
    """Called by the watcher (instances/watcher/apply.py) for every BLOCK_JOB event of a
    managed domain. event.detail: "vda copy ready", "vda copy completed" (pivot), "vda copy
    canceled" (stop), "vda copy failed"."""
    disk, kind, outcome = blockjobs.parse_event_detail(event.detail)
    if kind != "copy" or mirror_job_running(instance):
        return
    mirror = (
        instance.mirrors.filter(disk_target=disk, state__in=DiskMirror.ACTIVE)
        .select_related("volume")
        .first()
    )
    if mirror is None:
        return
    if outcome == "failed":
        mirror_fail(mirror, f"libvirt reported the block copy of {disk} failed.", uri=uri)
        _announce(instance)
        return
    if outcome == "canceled":
        mirror_fail(mirror, f"The block copy of {disk} was cancelled outside the panel.", uri=uri)
        _announce(instance)
        return
    try:  # ready, completed: read what libvirt has now
        if _refresh_one(instance, mirror, uri):
            _announce(instance)
    except VirtError as exc:
        log.info("mirror %s of %s not refreshed after %s: %s", mirror.pk, instance, outcome, exc)


def _on_instance_changed(sender, instance: Instance, **kwargs) -> None:
    """A domain that stopped took its block copies with it (no block-job event says so)."""
    if instance.state not in _STOPPED or instance.pk is None:
        return
    if not DiskMirror.objects.filter(instance_id=instance.pk, state__in=DiskMirror.ACTIVE).exists():
        return
    try:
        fresh = Instance.objects.select_related("host", "current_job").get(pk=instance.pk)
    except Instance.DoesNotExist:
        return
    mirrors_refresh(fresh)


instance_changed.connect(_on_instance_changed, dispatch_uid="instances.mirror_events.stopped")
