"""/healthz: is the database, Redis and at least one Celery worker up?

Anonymous callers (load balancers, monitors) get only {"status": "ok" | "degraded"}; staff
users also get the details (database vendor, errors, worker names).
"""

from __future__ import annotations

import threading
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from cloudpanel.celery import app as celery_app

PING_TIMEOUT = 1.0
# A ping that finds no worker waits its whole timeout: the answer is kept this long, so a
# monitor polling every second waits at most once per period.
WORKERS_CACHE_SECONDS = 5.0

_cache_lock = threading.Lock()
_cached_workers: tuple[float, dict] | None = None


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:
        return {"ok": False, "error": str(exc)}


def _redis() -> dict:
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
        )
        client.ping()
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": str(exc)}


def _ping_workers(limit: int | None) -> dict:
    """Workers answering a ping; with a limit, the ping ends at the limit-th answer instead
    of waiting out the timeout."""
    try:
        replies = celery_app.control.ping(timeout=PING_TIMEOUT, limit=limit) or []
    except Exception as exc:
        return {"ok": False, "error": str(exc), "count": 0}
    names = sorted(name for reply in replies for name in reply)
    return {"ok": bool(names), "count": len(names), "names": names}


def _any_worker() -> dict:
    """Is one worker up? Answered by the first reply, and kept for a few seconds."""
    global _cached_workers
    with _cache_lock:
        if _cached_workers and time.monotonic() - _cached_workers[0] < WORKERS_CACHE_SECONDS:
            return _cached_workers[1]
        result = _ping_workers(limit=1)
        _cached_workers = (time.monotonic(), result)
        return result


def reset_cache() -> None:
    global _cached_workers
    with _cache_lock:
        _cached_workers = None


def healthz(request):
    staff = request.user.is_authenticated and request.user.is_staff
    database = _database()
    cache = _redis()
    if not cache["ok"]:
        workers = {"ok": False, "error": "no broker", "count": 0}
    else:
        # Staff see every worker, which means waiting out the ping's timeout.
        workers = _ping_workers(limit=None) if staff else _any_worker()
    ok = database["ok"] and cache["ok"] and workers["ok"]
    body = {"status": "ok" if ok else "degraded"}
    if staff:
        body.update(database=database, redis=cache, workers=workers)
    return JsonResponse(body, status=200 if ok else 503)
