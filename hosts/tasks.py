"""Periodic host health, bounded under faults.

Checks run on a small pool of threads kept for the process, so a dead host never delays the
others. A host whose previous check is still running is skipped, never checked twice at once:
a host that accepts connections but never answers costs one pending check, not one more
thread and socket every cycle (the connection pool likewise keeps one open per URI).
"""

import functools
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from celery import shared_task
from django.db import connection

from . import services
from .models import Host

log = logging.getLogger(__name__)

MAX_WORKERS = 8
WAIT_SECONDS = 20  # under the task's soft time limit; a slower check finishes on its own

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_running: dict[int, Future] = {}  # host id -> its check still in progress


def _pool() -> ThreadPoolExecutor:
    global _executor, _executor_pid
    if _executor_pid != os.getpid():  # a forked worker child: threads do not survive fork
        _executor = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="health")
        _executor_pid = os.getpid()
        _running.clear()
    return _executor


def _check(host_id: int) -> None:
    try:
        host = Host.objects.filter(pk=host_id).first()
        if host is not None:
            services.host_check_health(host=host)
    finally:
        connection.close()


def _done(host_id: int, future: Future) -> None:
    with _lock:
        if _running.get(host_id) is future:
            del _running[host_id]
    if future.exception() is not None:
        log.warning("health check of host %s failed: %s", host_id, future.exception())


def start_checks(ids: list[int]) -> list[Future]:
    """Start a check for each host not already being checked; return the started ones."""
    started: dict[int, Future] = {}
    with _lock:
        pool = _pool()
        for host_id in ids:
            if host_id in _running:
                log.info("host %s: previous health check still running, skipped", host_id)
                continue
            started[host_id] = _running[host_id] = pool.submit(_check, host_id)
    for host_id, future in started.items():  # outside the lock: may run at once
        future.add_done_callback(functools.partial(_done, host_id))
    return list(started.values())


@shared_task(name="hosts.tasks.check_all_hosts", soft_time_limit=25)
def check_all_hosts() -> int:
    """Health of every enabled host; returns how many checks were started."""
    ids = list(Host.objects.filter(enabled=True).values_list("id", flat=True))
    started = start_checks(ids)
    wait(started, timeout=WAIT_SECONDS)
    return len(started)


@shared_task(name="hosts.tasks.mark_lost_hosts", soft_time_limit=60)
def mark_lost_hosts() -> dict[str, int]:
    """Instances of hosts offline past HOST_DOWN_GRACE_SECONDS become host-down."""
    return services.hosts_mark_lost()
