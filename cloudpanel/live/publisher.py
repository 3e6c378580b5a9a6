"""The one publisher of live events: a message to some Channels groups, never raising.

Groups of the status stream (cloudpanel.live.consumers):
- ADMIN_GROUP: everything, in the admin's view;
- project_group(id): what a project's members may see (instances, their metrics), each
  message carrying the tenant's view beside the admin's so the consumer picks, and re-checks
  the project on every delta.
Job progress keeps its own groups (cloudpanel.jobs.events: jobs.all, jobs.project.<id>).

Message types (the channel layer's "type" names the consumer's handler):
- "status.instance": {"instance": admin view, "public": tenant view, "project": id}
- "status.host":     {"host": admin view}                      (admins only)
- "status.metrics":  {"host": id, "t": unix time, "host_totals": {...},
                      "instances": [{"id", "project", "t", <figures>}]}
"""

from __future__ import annotations

import asyncio
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
        for group in groups:
            await layer.group_send(group, message)
    except Exception as exc:  # Redis down: the change is in the database, pages catch up
        log.warning("could not publish %s: %s", message.get("type"), exc)


PUBLISH_TIMEOUT = 5.0


class _Loop:
    """One event loop thread per process for a Redis layer. async_to_sync in a thread with no
    loop of its own (a Celery worker) makes a new loop, so a new Redis connection, for every
    message: about 10 ms each, several per job. Here the layer's connection stays open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro, timeout: float):
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a loop of its own
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="live-publisher", daemon=True
                ).start()
                self._pid = os.getpid()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


_loop = _Loop()


def publish(groups: list[str], message: dict) -> None:
    """Send `message` to every group in one event loop (one Redis connection)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if type(layer).__module__.startswith("channels_redis"):
            # Through Redis, any loop reaches every consumer; an in-memory layer's queues
            # belong to the caller's loop, so it keeps async_to_sync.
            _loop.run(apublish(groups, message), PUBLISH_TIMEOUT)
        else:
            async_to_sync(apublish)(groups, message)
    except Exception as exc:
        log.warning("could not publish %s: %s", message.get("type"), exc)
