"""Recent metric samples, kept in Redis and bounded: a list per object, capped in length
(retention / sweep interval) and expiring with the retention, so it never grows without limit.

A sample is a flat dict of numbers with "t" (unix time, seconds). Instance samples carry
cpu_percent, memory_used_bytes, memory_total_bytes, disk_read_bps, disk_write_bps,
net_rx_bps and net_tx_bps; host samples the totals over the host's running instances
(the same figures plus "instances", the count) and what the host reports of itself.
"""

from __future__ import annotations

import json
import threading

import redis
from django.conf import settings

INSTANCE = "instance"
HOST = "host"

_client: redis.Redis | None = None
_client_lock = threading.Lock()


def client() -> redis.Redis:
    global _client
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2
            )
        return _client


def _key(kind: str, object_id: int) -> str:
    return f"cloudpanel:metrics:{kind}:{object_id}"


def capacity() -> int:
    """Samples kept per object: the retention window at the sweep interval."""
    interval = max(float(settings.WATCHER_STATS_INTERVAL), 0.1)
    return max(int(settings.METRICS_RETENTION_SECONDS / interval) + 1, 2)


def record_many(kind: str, samples: dict[int, dict]) -> None:
    """Append one sample per object (id -> sample) in one round trip."""
    if not samples:
        return
    keep, ttl = capacity(), int(settings.METRICS_RETENTION_SECONDS)
    pipe = client().pipeline(transaction=False)
    for object_id, sample in samples.items():
        key = _key(kind, object_id)
        pipe.lpush(key, json.dumps(sample, separators=(",", ":")))
        pipe.ltrim(key, 0, keep - 1)
        pipe.expire(key, ttl)
    pipe.execute()


def recent(kind: str, object_id: int, *, since: float | None = None) -> list[dict]:
    """The object's samples, oldest first; with `since`, only those taken after it."""
    raw = client().lrange(_key(kind, object_id), 0, -1)
    samples = [json.loads(item) for item in reversed(raw)]
    if since is not None:
        samples = [s for s in samples if s.get("t", 0) > since]
    return samples


def latest(kind: str, object_ids) -> dict[int, dict]:
    """The newest sample of each object that has one (id -> sample), in one round trip."""
    ids = list(object_ids)
    if not ids:
        return {}
    pipe = client().pipeline(transaction=False)
    for object_id in ids:
        pipe.lindex(_key(kind, object_id), 0)
    return {
        object_id: json.loads(raw)
        for object_id, raw in zip(ids, pipe.execute(), strict=True)
        if raw is not None
    }


def forget(kind: str, object_id: int) -> None:
    client().delete(_key(kind, object_id))
