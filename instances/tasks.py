from celery import shared_task

from .reconcile import reconcile_all


@shared_task(name="instances.reconcile")
def reconcile() -> dict:
    """Compare every online host with the database (beat schedule: every minute or so)."""
    return reconcile_all().as_dict()


@shared_task(name="instances.backup_retention")
def backup_retention() -> int:
    """Keep the newest settings.BACKUP_KEEP_LAST backups of every instance (0: keep all)."""
    from django.conf import settings

    from .backups import backups_apply_retention

    return backups_apply_retention(int(getattr(settings, "BACKUP_KEEP_LAST", 0)))
