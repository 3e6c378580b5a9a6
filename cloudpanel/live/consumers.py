"""/ws/status/: a snapshot of what the user may see, then deltas, each checked against access.

On connect the socket joins the admin group and jobs.all (admins), or each visible project's
status and job groups (everyone else), then sends a snapshot (cloudpanel.live.snapshot).
Every delta is checked against the socket's cached access (AccessCheckedConsumer: re-read on
"access.changed" and at least every RECHECK_SECONDS; close codes 4401 and 4403) and sent in
the view the user may read: the admin's, or the tenant's ("public"). Hosts and host totals
go to admins only; metric samples are filtered to the visible projects.

Deltas reach the socket through the process's hub (cloudpanel.live.hub): one channel-layer
delivery per server process, handed to each socket in order and without waiting on it.

A slow client never holds the server up nor grows its memory: handlers only put frames in
a bounded queue (settings.STATUS_SOCKET_QUEUE) that one sender task per socket drains into
the socket. When the queue is full, everything queued is dropped and a fresh snapshot
("resync": true) takes its place: at most one is ever pending, and it is read when the
sender gets to it, so it is as new as can be. The same resync follows when the hub may have
lost messages (its channel layer failed or Redis restarted).

What is left silent: the hub's list in Redis is bounded (CHANNEL_LAYERS' channel_capacity
for "hub.*", see cloudpanel.settings); a process that falls that far behind as a whole (CPU
starved) misses messages without knowing. Sequence numbers in the published messages would
close that.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from cloudpanel.jobs.consumers import CLOSE_SIGNED_OUT, RESYNC, AccessCheckedConsumer
from cloudpanel.projects.access import job_event_visible

from .publisher import ADMIN_GROUP, project_group
from .snapshot import status_snapshot

log = logging.getLogger(__name__)

# Queue markers: read a snapshot when the sender reaches them, not when they are queued.
SNAPSHOT = "snapshot"
__all__ = ["RESYNC", "SNAPSHOT", "StatusConsumer"]


class StatusConsumer(AccessCheckedConsumer):
    def wanted_groups(self) -> list[str]:
        if self.projects is None:
            return [ADMIN_GROUP, "jobs.all"]
        groups = []
        for pid in sorted(self.projects):
            groups += [project_group(pid), f"jobs.project.{pid}"]
        return groups

    async def opened(self, extra) -> None:
        self.samples_sent: dict[int, float] = {}
        self.outbox.put_nowait(SNAPSHOT)

    async def marker_frame(self, marker: str) -> dict | None:
        data = await self._read_snapshot()
        if data is None:
            await self._shut(CLOSE_SIGNED_OUT)
            return None
        frame = {"type": "snapshot", **data}
        if marker == RESYNC:
            frame["resync"] = True
        return frame

    @database_sync_to_async
    def _read_snapshot(self) -> dict | None:
        user = self._active_user()  # also checks the session, as every access read does
        return None if user is None else status_snapshot(user)

    # Deltas (channel layer message types, see cloudpanel.live.publisher)

    def on_status_instance(self, event):
        if not job_event_visible(self.projects, event.get("project")):
            return
        view = event["instance"] if self.admin else event["public"]
        self.deliver({"type": "instance", "instance": view})

    def on_status_host(self, event):
        if self.admin:
            self.deliver({"type": "host", "host": event["host"]})

    def on_status_metrics(self, event):
        samples = event.get("instances") or []
        if self.admin:
            frame = {"type": "metrics", "t": event.get("t"), "instances": samples}
            frame["host"], frame["host_totals"] = event.get("host"), event.get("host_totals")
            self.deliver(frame)
            return
        samples = [s for s in samples if job_event_visible(self.projects, s.get("project"))]
        if len(self.projects) > 1:
            # The same sweep reaches each of the user's project groups: send a sample once.
            sent = self.samples_sent
            samples = [s for s in samples if sent.get(s.get("id")) != s.get("t")]
            sent.update((s.get("id"), s.get("t")) for s in samples)
        if samples:
            self.deliver({"type": "metrics", "t": event.get("t"), "instances": samples})
