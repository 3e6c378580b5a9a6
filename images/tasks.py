from celery import shared_task

from .store import sweep_incoming


@shared_task(name="images.sweep_incoming")
def sweep_incoming_files() -> list[str]:
    return sweep_incoming()
