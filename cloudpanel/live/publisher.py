"""The one publisher of live events: a message to some Channels groups, never raising.

Groups of the status stream (cloudpanel.live.consumers):
- ADMIN_GROUP: everything, in the admin's view;
- project_group(id): what a project's members may see (instances, their metrics), each
  message carrying the tenant's view beside the admin's so the consumer picks, and re-checks
  the project on every delta.
Job progress keeps its own groups (cloudpanel.jobs.events: jobs.all, jobs.project.<id>).

Message types (the channel layer's "type" names the consumer's handler; every message also
carries "group", the group it was sent to, for the hub, cloudpanel.live.hub):
- "status.instance": {"instance": admin view, "public": tenant view, "project": id}
- "status.host":     {"host": admin view}                      (admins only)
- "status.metrics":  {"host": id, "t": unix time, "host_totals": {...},
                      "instances": [{"id", "project", "t", <figures>}]}
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

ADMIN_GROUP = "status.admin"


def project_group(project_id: int) -> str:
    return f"status.project.{project_id}"


def groups_for(project_id: int | None) -> list[str]:
    """The admin group, and the project's when the object belongs to one."""
    return [ADMIN_GROUP] if project_id is None else [ADMIN_GROUP, project_group(project_id)]


async def apublish(groups: list[str], message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        for group in groups:  # the group named: each process's hub hands it to its members
            await layer.group_send(group, {**message, "group": group})
    except Exception as exc:  # Redis down: the change is in the database, pages catch up
        log.warning("could not publish %s: %s", message.get("type"), exc)


MAX_PENDING = 10_000  # messages waiting for Redis before new ones are dropped (Redis stuck)


class _Sender:
    """Messages from sync code, in order, through one event loop thread per process.

    async_to_sync in a thread with no loop of its own (a Celery worker) makes a new loop, so
    a new Redis connection, for every message: about 10 ms each, several per job. Here the
    layer's connection stays open, and the caller does not wait: a job's progress is in the
    database already, and a job should not stall on the thread hop or Redis (under load
    that wait was 10-100 ms a message). One queue drained by one task keeps the order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._pending = 0

    def _ensure_started(self) -> None:
        # Under self._lock. First use, or a forked child: a loop and queue of its own.
        if self._pid == os.getpid():
            return
        self._loop, self._queue, self._pending = asyncio.new_event_loop(), asyncio.Queue(), 0
        threading.Thread(
            target=self._loop.run_until_complete,
            args=(self._drain(self._queue),),
            name="live-publisher",
            daemon=True,
        ).start()
        if self._pid is None:
            atexit.register(self.flush, 2.0)  # what was queued goes out before exit
        self._pid = os.getpid()

    async def _drain(self, queue: asyncio.Queue) -> None:
        while True:
            groups, message, done = await queue.get()
            try:
                if message is not None:
                    await apublish(groups, message)  # never raises
            finally:
                with self._lock:
                    self._pending -= 1
                if done is not None:
                    done.set()

    def _put(self, item: tuple) -> bool:
        with self._lock:
            self._ensure_started()
            if item[1] is not None and self._pending >= MAX_PENDING:
                return False
            self._pending += 1
            loop, queue = self._loop, self._queue
        loop.call_soon_threadsafe(queue.put_nowait, item)
        return True

    def send(self, groups: list[str], message: dict) -> None:
        if not self._put((groups, message, None)):
            log.warning("publisher: %d messages wait for Redis; dropped %s", MAX_PENDING,
                        message.get("type"))  # fmt: skip

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every message sent before has been published (or given up on)."""
        with self._lock:
            if self._pid != os.getpid():
                return True
        done = threading.Event()
        self._put(([], None, done))
        return done.wait(timeout)


_sender = _Sender()


def flush(timeout: float = 5.0) -> bool:
    """Wait for this process's queued messages to reach the channel layer (tests, exits)."""
    return _sender.flush(timeout)


def publish(groups: list[str], message: dict) -> None:
    """Send `message` to every group, in order with this process's other messages; returns
    at once with a Redis layer (sent by the publisher thread), never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if type(layer).__module__.startswith("channels_redis"):
            # Through Redis, any loop reaches every consumer; an in-memory layer's queues
            # belong to the caller's loop, so it keeps async_to_sync.
            _sender.send(groups, message)
        else:
            async_to_sync(apublish)(groups, message)
    except Exception as exc:
        log.warning("could not publish %s: %s", message.get("type"), exc)
