"""/healthz: is the database, Redis and at least one Celery worker up?"""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from cloudpanel.celery import app as celery_app


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


def _workers(redis_ok: bool) -> dict:
    if not redis_ok:
        return {"ok": False, "error": "no broker", "count": 0}
    try:
        replies = celery_app.control.ping(timeout=1.0) or []
    except Exception as exc:
        return {"ok": False, "error": str(exc), "count": 0}
    names = sorted(name for reply in replies for name in reply)
    return {"ok": bool(names), "count": len(names), "names": names}


def healthz(request):
    database = _database()
    cache = _redis()
    workers = _workers(cache["ok"])
    ok = database["ok"] and cache["ok"] and workers["ok"]
    body = {"status": "ok" if ok else "degraded", "database": database, "redis": cache,
            "workers": workers}
    return JsonResponse(body, status=200 if ok else 503)
