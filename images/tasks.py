from celery import shared_task

from .distribution import distribute_missing
from .store import sweep_incoming


@shared_task(name="images.sweep_incoming")
def sweep_incoming_files() -> list[str]:
    return sweep_incoming()


@shared_task(name="images.distribute_all")
def distribute_all() -> list[int]:
    """Start distribution jobs for images whose policy names online hosts lacking a copy
    (hosts that joined or came back since); the ids of the jobs started."""
    return [job.id for job in distribute_missing()]
