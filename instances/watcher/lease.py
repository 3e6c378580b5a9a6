"""One owner per host: a Redis lease per host, held by one watcher process at a time.

A lease is a key holding the owner's random token, set with NX and a PX expiry. The owner
renews it well within its lifetime with a compare-and-renew script (only the token's
holder may extend it, so a process that stalled past its lease never extends the lease
another process took meanwhile) and deletes it the same way on a clean exit. A process
that dies simply stops renewing: the key expires and another process takes the host.

`holds()` is the local view the owner checks before it publishes anything: the lease
counts as held only until a safety margin before the expiry Redis was given, measured
from before the request was sent, so a process that stalled (or lost Redis) stops
publishing before another could have taken over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import redis

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# The local view of a lease ends this share of its lifetime after the request was sent.
SAFETY = 0.8


def lease_key(host_id: int) -> str:
    return f"cloudpanel:watcher:lease:{host_id}"


class Leases:
    """The leases of one watcher process (thread-safe)."""

    def __init__(self, client: redis.Redis, seconds: float, token: str | None = None) -> None:
        self.client = client
        self.seconds = float(seconds)
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._valid_until: dict[int, float] = {}  # host id -> time.monotonic()
        self._lock = threading.Lock()
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def _ms(self) -> int:
        return max(int(self.seconds * 1000), 1)

    def _held_until(self, host_id: int, sent: float) -> None:
        with self._lock:
            self._valid_until[host_id] = sent + self.seconds * SAFETY

    def forget(self, host_id: int) -> None:
        """Stop counting the lease as held here (without touching Redis)."""
        with self._lock:
            self._valid_until.pop(host_id, None)

    def acquire(self, host_id: int) -> bool:
        """Take the host's lease if nobody holds it."""
        sent = time.monotonic()
        try:
            taken = self.client.set(lease_key(host_id), self.token, nx=True, px=self._ms)
        except redis.RedisError as exc:
            log.warning("lease of host %s not taken: %s", host_id, exc)
            return False
        if taken:
            self._held_until(host_id, sent)
        return bool(taken)

    def renew(self, host_ids) -> set[int]:
        """Extend the leases of `host_ids` this process holds; returns those still held."""
        ids = list(host_ids)
        if not ids:
            return set()
        sent = time.monotonic()
        try:
            pipe = self.client.pipeline(transaction=False)
            for host_id in ids:
                self._renew(keys=[lease_key(host_id)], args=[self.token, self._ms], client=pipe)
            results = pipe.execute()
        except redis.RedisError as exc:
            # Not renewed: holds() runs out on its own, and the owner stops publishing.
            log.warning("leases not renewed: %s", exc)
            return {host_id for host_id in ids if self.holds(host_id)}
        held = set()
        for host_id, result in zip(ids, results, strict=True):
            if result:
                self._held_until(host_id, sent)
                held.add(host_id)
            else:
                self.forget(host_id)
        return held

    def release(self, host_id: int) -> None:
        """Give the lease up now (only if this process still holds it)."""
        self.forget(host_id)
        try:
            self._release(keys=[lease_key(host_id)], args=[self.token])
        except redis.RedisError as exc:
            log.warning("lease of host %s not released (it expires): %s", host_id, exc)

    def holds(self, host_id: int) -> bool:
        with self._lock:
            return time.monotonic() < self._valid_until.get(host_id, 0.0)

    def owner(self, host_id: int) -> str | None:
        value = self.client.get(lease_key(host_id))
        return value.decode() if isinstance(value, bytes) else value
