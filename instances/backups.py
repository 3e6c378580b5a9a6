"""Backups as the user sees them: listing, deleting (the copies on the host, then the row),
and retention (keep the newest N of each instance)."""

from __future__ import annotations

import logging

from django.db.models import Q, QuerySet

from cloudpanel.audit.decorators import audited
from cloudpanel.errors import Conflict
from cloudpanel.jobs.models import Job
from cloudpanel.projects import access
from cloudpanel.virt import VirtError, storage
from hosts.connection import connection_uri

from .models import Backup, Instance
from .rules import require_act

log = logging.getLogger(__name__)


def backup_list(*, user, instance: Instance | None = None) -> QuerySet[Backup]:
    """The backups the user may see, newest first (of one instance when given)."""
    backups = access.scope_to_user(Backup.objects.select_related("host", "instance"), user)
    if instance is not None:
        backups = backups.filter(instance=instance)
    return backups.prefetch_related("volumes")


def _busy(backup: Backup) -> Job | None:
    return Job.objects.filter(
        target_type=Job.TargetType.BACKUP, target_id=backup.pk, status__in=Job.ACTIVE
    ).first()


def _remove(backup: Backup) -> None:
    """Delete the backup's volumes from their host, then the rows and the backup."""
    for volume in backup.volumes.select_related("host"):
        storage.delete_volume(connection_uri(volume.host), volume.pool, volume.name)
        volume.delete()
    backup.delete()


@audited("backup.delete", target="backup")
def backup_delete(*, user, backup: Backup) -> None:
    require_act(user, backup.project)
    if backup.state == Backup.State.CREATING:
        raise Conflict("The backup is still being made; cancel its job first.")
    running = _busy(backup)
    if running is not None:
        raise Conflict(f"The backup is being restored (job {running.pk}); wait for it.")
    _remove(backup)


def backups_apply_retention(keep_last: int) -> int:
    """Keep the newest `keep_last` ready backups of every instance and delete the older
    ones, and failed ones older than the newest ready one; 0 keeps everything. Backups of
    deleted instances are kept: they may be the only copy left. Returns how many went."""
    if keep_last <= 0:
        return 0
    deleted = 0
    instance_ids = (
        Backup.objects.filter(instance__isnull=False, state=Backup.State.READY)
        .order_by()
        .values_list("instance_id", flat=True)
        .distinct()
    )
    for instance_id in instance_ids:
        ready = Backup.objects.filter(instance_id=instance_id, state=Backup.State.READY)
        kept = list(ready.order_by("-created_at", "-id")[:keep_last])
        if len(kept) < keep_last:
            continue
        # Beyond the newest N ready ones, and failed ones older than the newest ready one
        # (they hold no data; the newer backup replaced them).
        older = (
            Backup.objects.filter(instance_id=instance_id)
            .exclude(state=Backup.State.CREATING)
            .exclude(pk__in=[b.pk for b in kept])
            .filter(
                Q(state=Backup.State.READY, created_at__lte=kept[-1].created_at)
                | Q(state=Backup.State.FAILED, created_at__lte=kept[0].created_at)
            )
        )
        for backup in older.select_related("host"):
            if _busy(backup) is not None:
                continue
            try:
                _remove(backup)
            except VirtError as exc:  # the host is down: try again next time
                log.warning("retention could not delete %s: %s", backup, exc)
                continue
            deleted += 1
    return deleted
