from celery import shared_task

from .reconcile import reconcile_all


@shared_task(name="instances.reconcile")
def reconcile() -> dict:
    """Compare every online host with the database (beat schedule: every minute or so)."""
    return reconcile_all().as_dict()
