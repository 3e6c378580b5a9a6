"""/ws/status/: a snapshot of what the user may see, then deltas, each checked against access.

On connect the socket joins the admin group and jobs.all (admins), or each visible project's
status and job groups (everyone else), then sends a snapshot (cloudpanel.live.snapshot).
Every delta is checked against the socket's cached access (AccessCheckedConsumer: re-read on
"access.changed" and at least every RECHECK_SECONDS; close codes 4401 and 4403) and sent in
the view the user may read: the admin's, or the tenant's ("public"). Hosts and host totals
go to admins only; metric samples are filtered to the visible projects.

A slow client never holds the server up nor grows its memory: handlers only put frames in
a bounded queue (settings.STATUS_SOCKET_QUEUE) that one sender task per socket drains into
the socket. When the queue is full, everything queued is dropped and a fresh snapshot
("resync": true) takes its place: at most one is ever pending, and it is read when the
sender gets to it, so it is as new as can be.

channels-redis has two bounds of its own (its "capacity", 100), both dropping silently:
the one Redis list of each server process (all its sockets' messages: group_send skips a
full list), and each socket's buffer in the process (the oldest message goes). Because
handlers never wait on the socket, a socket's buffer drains as fast as the event loop runs
and a slow client shows here, where it becomes a resync rather than a silent gap. What is
left is a process that falls more than 100 messages behind as a whole (CPU starved): its
sockets then miss messages without knowing; a larger capacity in CHANNEL_LAYERS, or
sequence numbers in the published messages, would close that.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from cloudpanel.jobs.consumers import CLOSE_SIGNED_OUT, AccessCheckedConsumer
from cloudpanel.projects.access import job_event_visible

from .publisher import ADMIN_GROUP, project_group
from .snapshot import status_snapshot

log = logging.getLogger(__name__)

# Queue markers: read a snapshot when the sender reaches them, not when they are queued.
SNAPSHOT = "snapshot"
RESYNC = "resync"


class StatusConsumer(AccessCheckedConsumer):
    outbox: asyncio.Queue | None = None
    sender: asyncio.Task | None = None
    resyncs = 0  # overflows of this socket's queue

    def wanted_groups(self) -> list[str]:
        if self.projects is None:
            return [ADMIN_GROUP, "jobs.all"]
        groups = []
        for pid in sorted(self.projects):
            groups += [project_group(pid), f"jobs.project.{pid}"]
        return groups

    async def opened(self, extra) -> None:
        self.outbox = asyncio.Queue(maxsize=max(int(settings.STATUS_SOCKET_QUEUE), 1))
        self.samples_sent: dict[int, float] = {}
        self.outbox.put_nowait(SNAPSHOT)
        self.sender = asyncio.create_task(self._send_loop())

    # The queue and its sender

    async def deliver(self, frame: dict) -> None:
        outbox = self.outbox
        if outbox is None:
            return
        try:
            outbox.put_nowait(frame)
        except asyncio.QueueFull:
            # The client fell behind: what is queued is superseded by one fresh snapshot.
            while not outbox.empty():
                outbox.get_nowait()
            outbox.put_nowait(RESYNC)
            self.resyncs += 1

    async def _send_loop(self) -> None:
        outbox = self.outbox
        try:
            while True:
                item = await outbox.get()
                if isinstance(item, str):
                    frame = await self._snapshot_frame(resync=item == RESYNC)
                    if frame is None:
                        await self._shut(CLOSE_SIGNED_OUT)
                        return
                else:
                    frame = item
                await self.send_json(frame)  # waits while the client does not read
        except asyncio.CancelledError:
            raise
        except OSError:
            pass  # the client went away; its disconnect follows
        except Exception:
            log.exception("status socket of user %s failed", self.user_id)
            await self._shut(1011)

    async def _snapshot_frame(self, *, resync: bool) -> dict | None:
        data = await self._read_snapshot()
        if data is None:
            return None
        frame = {"type": "snapshot", **data}
        if resync:
            frame["resync"] = True
        return frame

    @database_sync_to_async
    def _read_snapshot(self) -> dict | None:
        user = self._active_user()  # also checks the session, as every access read does
        return None if user is None else status_snapshot(user)

    async def _stop_sender(self) -> None:
        sender, self.sender, self.outbox = self.sender, None, None
        if sender is not None and sender is not asyncio.current_task():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def before_close(self) -> None:
        await self._stop_sender()

    async def disconnect(self, code):
        self.closing = True
        await self._stop_sender()
        await super().disconnect(code)

    # Deltas (channel layer message types, see cloudpanel.live.publisher)

    async def status_instance(self, event):
        if not await self.fresh() or not job_event_visible(self.projects, event.get("project")):
            return
        view = event["instance"] if self.admin else event["public"]
        await self.deliver({"type": "instance", "instance": view})

    async def status_host(self, event):
        if not await self.fresh() or not self.admin:
            return
        await self.deliver({"type": "host", "host": event["host"]})

    async def status_metrics(self, event):
        if not await self.fresh():
            return
        samples = event.get("instances") or []
        if self.admin:
            frame = {"type": "metrics", "t": event.get("t"), "instances": samples}
            frame["host"], frame["host_totals"] = event.get("host"), event.get("host_totals")
            await self.deliver(frame)
            return
        samples = [s for s in samples if job_event_visible(self.projects, s.get("project"))]
        if len(self.projects) > 1:
            # The same sweep reaches each of the user's project groups: send a sample once.
            sent = self.samples_sent
            samples = [s for s in samples if sent.get(s.get("id")) != s.get("t")]
            sent.update((s.get("id"), s.get("t")) for s in samples)
        if samples:
            await self.deliver({"type": "metrics", "t": event.get("t"), "instances": samples})
