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
import logging
import random
import time
import weakref
from importlib import import_module

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from cloudpanel.projects.access import job_event_visible, visible_project_ids

from .events import job_to_event
from .selectors import job_list_for

log = logging.getLogger(__name__)

RECHECK_SECONDS = 30.0
# Group joins and leaves in flight at once per event loop (process). channels-redis takes a
# connection from a pool of 100 (redis-py) for each and fails past it: a thousand browsers
# reconnecting after a restart, or leaving together, would otherwise get errors, and a
# socket that could not leave its groups stays in them (its buffer, up to the layer's
# capacity, kept in the process for nothing).
LAYER_CONCURRENCY = 32
_layer_gates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
CLOSE_SIGNED_OUT = 4401
CLOSE_ACCESS_LOST = 4403  # the client reconnects and gets its current access
CLOSE_NOT_FOUND = 4404  # the client stops: the job is not (or no more) the user's to see


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def _layer_gate() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gate = _layer_gates.get(loop)
    if gate is None:
        gate = _layer_gates[loop] = asyncio.Semaphore(LAYER_CONCURRENCY)
    return gate


class AccessCheckedConsumer(AsyncJsonWebsocketConsumer):
    """A socket of a signed-in user whose every event is checked against their access.

    Subclasses name their groups (wanted_groups), may read one more thing with the access
    (read_with_access: JobConsumer's job) and send their first frames once open (opened).
    Events go out through deliver(), after fresh() said the socket may still send.
    """

    groups_joined: list[str]
    closing = False
    admin = False
    projects: set[int] | frozenset[int] | None = frozenset()

    async def connect(self):
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_SIGNED_OUT)
            return
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
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
        self._plan_recheck(RECHECK_SECONDS * random.uniform(0.1, 1.0))
        await self.opened(extra)

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
        """The socket is accepted and in its groups: send what comes first."""

    async def deliver(self, frame: dict) -> None:
        await self.send_json(frame)

    async def before_close(self) -> None:
        """Called once before the socket is closed for lost access."""

    # The mechanism

    async def dispatch(self, message):
        # Channels (4.2+) closes old database connections before every handler, in a trip
        # to the one database thread: one trip per socket per event, all in a row, which
        # made an event take a second to reach a thousand sockets. Every database read here
        # goes through database_sync_to_async, which closes them itself, so it is skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def _join(self, group: str) -> None:
        async with _layer_gate():
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.append(group)

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
            self._stop_rechecks()
            await self.before_close()
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
        for name in ("_recheck_timer", "_recheck_task"):
            pending = getattr(self, name, None)
            if pending is not None and pending is not asyncio.current_task():
                pending.cancel()

    async def _recheck(self) -> bool:
        """Refresh the cached access; close the socket if it lost any. False when closed."""
        started = time.monotonic()
        async with self._rechecking:  # one read at a time; one begun since ours will do
            if self.closing:
                return False
            if self.checked_at >= started:
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

    async def fresh(self) -> bool:
        """May this socket send an event now? Re-checks access when the cache is old."""
        if self.closing:
            return False
        if time.monotonic() - self.checked_at > RECHECK_SECONDS:
            return await self._recheck()
        return True

    async def disconnect(self, code):
        self._stop_rechecks()
        groups, self.groups_joined = getattr(self, "groups_joined", None) or [], []
        for group in groups:
            try:
                async with _layer_gate():
                    await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as exc:  # Redis down: the group's expiry drops the member
                log.warning("could not leave %s: %s", group, exc)

    async def access_changed(self, event):
        if not self.closing:
            await self._recheck()

    async def job_update(self, event):
        if not await self.fresh():
            return
        job = event["job"]
        if not job_event_visible(self.projects, job.get("project")):
            return
        await self.deliver({"type": "job", "job": job if self.admin else event["public"]})


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
            await self.send_json({"type": "job", "job": job_to_event(job, public=not self.admin)})
