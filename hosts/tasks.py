from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from django.db import connection

from . import services
from .models import Host


def _check(host_id: int) -> None:
    try:
        host = Host.objects.get(pk=host_id)
        services.host_check_health(host=host)
    finally:
        connection.close()


@shared_task(name="hosts.tasks.check_all_hosts", soft_time_limit=25)
def check_all_hosts() -> int:
    """Health of every enabled host, in parallel so one dead host never delays the others."""
    ids = list(Host.objects.filter(enabled=True).values_list("id", flat=True))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_check, ids))
    return len(ids)

