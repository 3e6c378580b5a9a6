"""Live job progress over a WebSocket: /ws/jobs/ (all visible) or /ws/jobs/<id>/.

Access is decided when the socket opens and checked again on every event against the
socket's cached view of the user (admin or the projects they see). The cache is refreshed
when the user's access changes (a membership removed, staff or active status changed: the
`user.<id>` group gets an "access.changed" message, see cloudpanel.projects.events; a
sign-out or password change sends it too) and at least every RECHECK_SECONDS in case such a
message was lost: by a timer of the socket (its first run at a random point of the period,
so a thousand sockets opened together do not all read the database together, least of all
in the way of one event), and before an event if the cache is older than that anyway. Each
check also reads the socket's session afresh: a signed-out or rotated session ends the
socket. A socket that lost access is closed; the browser reconnects and gets what the user
may see now.

AccessCheckedConsumer holds that mechanism for every socket that streams project objects
(this one and cloudpanel.live.consumers.StatusConsumer).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from importlib import import_module

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from cloudpanel.live.hub import hub_for_loop
from cloudpanel.projects.access import job_event_visible, visible_project_ids

from .events import job_to_event
from .selectors import job_list_for

log = logging.getLogger(__name__)

RECHECK_SECONDS = 30.0
# Messages held behind an access re-check (a database read): past it they are dropped and
# the socket resyncs once the check is done.
HELD_LIMIT = 1024
CLOSE_SIGNED_OUT = 4401
CLOSE_ACCESS_LOST = 4403  # the client reconnects and gets its current access
CLOSE_NOT_FOUND = 4404  # the client stops: the job is not (or no more) the user's to see
# Queue marker: "what was queued may be incomplete", read when the sender reaches it.
RESYNC = "resync"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class AccessCheckedConsumer(AsyncJsonWebsocketConsumer):
    """A socket of a signed-in user whose every event is checked against their access.

    Subclasses name their groups (wanted_groups), may read one more thing with the access
    (read_with_access: JobConsumer's job) and queue their first frames once open (opened).

    Channel-layer messages come from the process's hub (cloudpanel.live.hub), not from a
    channel of the socket's own: hub_message() is called in the order the hub received
    them and never waits. An event goes to its handler (on_<type>) at once while the cached
    access is fresh; an "access.changed", or an event finding the cache older than
    RECHECK_SECONDS, starts a re-read of the access and every later message waits behind it
    (held, in order), so nothing published after a revocation is sent before the socket
    knows. Handlers only queue frames (deliver); one sender task per socket drains the
    bounded queue (settings.STATUS_SOCKET_QUEUE) into the socket. A full queue, or a hub
    that lost messages, becomes one RESYNC marker: a fresh snapshot (StatusConsumer) or, by
    default, a 4403 close after which the client reconnects and reads what it may see.
    """

    groups_joined: list[str]
    closing = False
    admin = False
    projects: set[int] | frozenset[int] | None = frozenset()
    hub = None
    outbox: asyncio.Queue | None = None
    sender: asyncio.Task | None = None
    resyncs = 0  # overflows of this socket's queue
    _held: collections.deque | None = None
    _held_overflow = False

    async def __call__(self, scope, receive, send):
        # AsyncConsumer.__call__ without the socket's own channel and receive loop: the
        # process's hub receives for every socket.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = None
        self.base_send = send
        try:
            await await_many_dispatch([receive], self.dispatch)
        except StopConsumer:
            pass

    async def connect(self):
        self.groups_joined = []
        self._held = collections.deque()  # until the socket is open and its access read
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_SIGNED_OUT)
            return
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        self.hub = hub_for_loop(self.channel_layer) if self.channel_layer is not None else None
        # Listen for access changes before reading access, so none is missed in between.
        await self._join(user_group(self.user_id))
        access = await self._access()
        if access is None:
            await self._refuse(CLOSE_SIGNED_OUT)
            return
        self.admin, self.projects, extra = access
        code = self.refused(extra)
        if code is not None:
            await self._refuse(code)
            return
        self.checked_at = time.monotonic()
        self._rechecking = asyncio.Lock()
        for group in self.wanted_groups():
            await self._join(group)
        await self.accept()
        self.outbox = asyncio.Queue(maxsize=max(int(settings.STATUS_SOCKET_QUEUE), 1))
        self.sender = asyncio.create_task(self._send_loop())
        self._plan_recheck(RECHECK_SECONDS * random.uniform(0.1, 1.0))
        await self.opened(extra)
        self._release()  # what arrived meanwhile, after the first frames

    # Hooks

    def wanted_groups(self) -> list[str]:
        raise NotImplementedError

    def read_with_access(self, user):
        """Read in the same thread trip as the access (sync; the database is at hand)."""
        return None

    def refused(self, extra) -> int | None:
        """The close code refusing the socket at connect, or None to accept it."""
        return None

    def lost(self, admin: bool, projects: set[int] | None, extra) -> int | None:
        """The close code when a re-check finds access lost, or None to go on."""
        lost = (self.admin and not admin) or (
            projects is not None and (self.projects is None or self.projects - projects)
        )
        return CLOSE_ACCESS_LOST if lost else None

    async def opened(self, extra) -> None:
        """The socket is accepted and in its groups: queue what comes first."""

    async def marker_frame(self, marker: str) -> dict | None:
        """The frame a queue marker stands for, read when the sender reaches it; None
        after closing the socket. RESYNC: the client reconnects and starts afresh."""
        await self._shut(CLOSE_ACCESS_LOST)
        return None

    # Messages from the hub (sync: never waits)

    def hub_message(self, message: dict) -> None:
        if self.closing:
            return
        held = self._held
        if held is not None:
            if len(held) < HELD_LIMIT:
                held.append(message)
            else:
                self._held_overflow = True
            return
        if message.get("type") == "access.changed":
            self._hold_for_recheck(collections.deque())
        elif time.monotonic() - self.checked_at > RECHECK_SECONDS:
            self._hold_for_recheck(collections.deque([message]))
        else:
            self._handle(message)

    def hub_resync(self) -> None:
        """The hub may have lost messages (channel layer down or restarted)."""
        if not self.closing:
            self._resync()

    def _handle(self, message: dict) -> None:
        handler = getattr(self, "on_" + str(message.get("type")).replace(".", "_"), None)
        if handler is None:
            log.warning("socket of user %s: no handler for %r", self.user_id, message.get("type"))
            return
        handler(message)

    def _hold_for_recheck(self, held: collections.deque) -> None:
        self._held = held
        self._release_task = asyncio.ensure_future(self._recheck_then_release())

    async def _recheck_then_release(self) -> None:
        try:
            await self._recheck(forced=True)
        except Exception:
            log.exception("socket of user %s: the access re-check failed", self.user_id)
            await self._shut(1011)
        self._release()

    def _release(self) -> None:
        """Handle the held messages in order (sync, so none arrives in between); another
        "access.changed" among them holds the rest again behind a new re-check."""
        held, self._held = self._held, None
        overflow, self._held_overflow = self._held_overflow, False
        if self.closing or held is None:
            return
        while held:
            message = held.popleft()
            if message.get("type") == "access.changed":
                self._held_overflow = overflow
                self._hold_for_recheck(held)
                return
            self._handle(message)
        if overflow:
            self._resync()

    # The queue and its sender

    def deliver(self, frame: dict) -> None:
        outbox = self.outbox
        if outbox is None or self.closing:
            return
        try:
            outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.resyncs += 1  # the client fell behind
            self._resync()

    def _resync(self) -> None:
        """What is queued is superseded by one RESYNC marker: at most one is ever pending."""
        outbox = self.outbox
        if outbox is None:
            self._held_overflow = True  # not open yet: after the first frames
            return
        while not outbox.empty():
            outbox.get_nowait()
        outbox.put_nowait(RESYNC)

    async def _send_loop(self) -> None:
        outbox = self.outbox
        try:
            while True:
                item = await outbox.get()
                if isinstance(item, str):
                    frame = await self.marker_frame(item)
                    if frame is None:
                        return
                else:
                    frame = item
                await self.send_json(frame)  # waits while the client does not read
        except asyncio.CancelledError:
            raise
        except OSError:
            pass  # the client went away; its disconnect follows
        except Exception:
            log.exception("socket of user %s failed", self.user_id)
            await self._shut(1011)

    async def _stop_sender(self) -> None:
        sender, self.sender, self.outbox = self.sender, None, None
        if sender is not None and sender is not asyncio.current_task():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    # The mechanism

    async def dispatch(self, message):
        # Channels (4.2+) closes old database connections before every handler, in a trip
        # to the one database thread: one trip per socket per message. Every database read
        # here goes through database_sync_to_async, which closes them itself, so it is
        # skipped. (Only the socket's own messages come here; the hub's go to hub_message.)
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def _join(self, group: str) -> None:
        if self.hub is not None:
            self.groups_joined.append(group)  # left on disconnect even if this join fails
            await self.hub.join(group, self)

    @database_sync_to_async
    def _access(self):
        """(admin, visible project ids or None, read_with_access's answer), read afresh;
        None when the user is gone or deactivated, or the session is no more theirs."""
        user = self._active_user()
        if user is None:
            return None
        ids = visible_project_ids(user)
        return user.is_staff, (None if ids is None else set(ids)), self.read_with_access(user)

    def _active_user(self):
        """The socket's user read afresh (sync), or None if it may no longer use the socket."""
        user = get_user_model().objects.filter(pk=self.user_id, is_active=True).first()
        if user is None or not self._session_still_valid(user):
            return None
        return user

    def _session_still_valid(self, user) -> bool:
        """Is the session this socket opened with still this user's, as a page would see it
        (not signed out, flushed, or from before a password change)?"""
        session = self.scope.get("session")
        if session is None or not self.session_key:
            return True  # authenticated by other means than a session cookie
        store = import_module(settings.SESSION_ENGINE).SessionStore
        data = store(session_key=self.session_key).load()
        return data.get(SESSION_KEY) == str(user.pk) and constant_time_compare(
            data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
        )

    async def _refuse(self, code: int) -> None:
        self.closing = True  # a message already on its way finds the socket shut
        await self.disconnect(code)  # a refused handshake may never get a disconnect
        await self.close(code=code)

    async def _shut(self, code: int) -> bool:
        if not self.closing:
            self.closing = True  # nothing more is sent, even before the disconnect arrives
            self._held = None
            self._stop_rechecks()
            await self._stop_sender()
            await self.close(code=code)
        return False

    def _plan_recheck(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._recheck_timer = loop.call_later(max(delay, 0.5), self._recheck_due)

    def _recheck_due(self) -> None:
        if not self.closing:
            self._recheck_task = asyncio.ensure_future(self._timed_recheck())

    async def _timed_recheck(self) -> None:
        if await self._recheck():
            self._plan_recheck(RECHECK_SECONDS * random.uniform(0.9, 1.0))

    def _stop_rechecks(self) -> None:
        for name in ("_recheck_timer", "_recheck_task", "_release_task"):
            pending = getattr(self, name, None)
            if pending is not None and pending is not asyncio.current_task():
                pending.cancel()

    async def _recheck(self, forced: bool = False) -> bool:
        """Refresh the cached access; close the socket if it lost any. False when closed.
        One read at a time; unless `forced`, one begun since this call was made will do."""
        started = time.monotonic()
        async with self._rechecking:
            if self.closing:
                return False
            if self.checked_at >= started and not forced:
                return True
            return await self._reread_access()

    async def _reread_access(self) -> bool:
        self.checked_at = time.monotonic()
        access = await self._access()
        if access is None:
            return await self._shut(CLOSE_SIGNED_OUT)
        admin, projects, extra = access
        code = self.lost(admin, projects, extra)
        if code is not None:
            return await self._shut(code)
        self.admin, self.projects = admin, projects
        for group in self.wanted_groups():  # gained a project (or admin): listen to it too
            if group not in self.groups_joined:
                await self._join(group)
        return True

    async def disconnect(self, code):
        self.closing = True
        self._held = None
        self._stop_rechecks()
        await self._stop_sender()
        groups, self.groups_joined = getattr(self, "groups_joined", None) or [], []
        hub = self.hub
        if hub is not None:
            for group in groups:
                await hub.leave(group, self)  # never raises

    # Handlers of the hub's messages (sync; the access cache is fresh here)

    def on_job_update(self, event):
        job = event["job"]
        if not job_event_visible(self.projects, job.get("project")):
            return
        self.deliver({"type": "job", "job": job if self.admin else event["public"]})


class JobConsumer(AccessCheckedConsumer):
    async def connect(self):
        self.job_id = self.scope["url_route"]["kwargs"].get("job_id")
        await super().connect()

    def wanted_groups(self) -> list[str]:
        if self.job_id is not None:
            return [f"job.{self.job_id}"]
        if self.projects is None:
            return ["jobs.all"]
        return [f"jobs.project.{pid}" for pid in sorted(self.projects)]

    def read_with_access(self, user):
        if self.job_id is None:
            return None
        return job_list_for(user).filter(id=self.job_id).first()

    def refused(self, job) -> int | None:
        if self.job_id is not None and job is None:
            return CLOSE_NOT_FOUND  # not found, or not the user's to see
        return None

    def lost(self, admin, projects, job) -> int | None:
        if self.job_id is not None:  # a job socket ends when the job is no more visible
            return CLOSE_NOT_FOUND if job is None else None
        return super().lost(admin, projects, job)

    async def opened(self, job) -> None:
        if job is not None:
            self.deliver({"type": "job", "job": job_to_event(job, public=not self.admin)})
