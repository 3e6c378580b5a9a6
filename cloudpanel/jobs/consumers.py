"""Live job progress over a WebSocket: /ws/jobs/ (all visible) or /ws/jobs/<id>/.

Access is decided when the socket opens and checked again on every event against the
socket's cached view of the user (admin or the projects they see). The cache is refreshed
when the user's access changes (a membership removed, staff or active status changed: the
`user.<id>` group gets an "access.changed" message, see cloudpanel.projects.events; a
sign-out or password change sends it too) and at least every RECHECK_SECONDS in case such a
message was lost. Each check also reads the socket's session afresh: a signed-out or
rotated session ends the socket. A socket that lost access is closed; the browser
reconnects and gets what the user may see now.
"""

from __future__ import annotations

import time
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from cloudpanel.projects.access import job_event_visible, visible_project_ids

from .events import job_to_event
from .selectors import job_list_for

RECHECK_SECONDS = 30.0
CLOSE_SIGNED_OUT = 4401
CLOSE_ACCESS_LOST = 4403  # the client reconnects and gets its current access
CLOSE_NOT_FOUND = 4404  # the client stops: the job is not (or no more) the user's to see


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class JobConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]
    closing = False

    async def connect(self):
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_SIGNED_OUT)
            return
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        self.job_id = self.scope["url_route"]["kwargs"].get("job_id")
        # Listen for access changes before reading access, so none is missed in between.
        await self._join(user_group(self.user_id))
        access = await self._access()
        if access is None:
            await self._refuse(CLOSE_SIGNED_OUT)
            return
        self.admin, self.projects, job = access
        if self.job_id is not None and job is None:
            await self._refuse(CLOSE_NOT_FOUND)  # not found, or not the user's to see
            return
        self.checked_at = time.monotonic()
        for group in self._wanted_groups():
            await self._join(group)
        await self.accept()
        if job is not None:
            await self.send_json({"type": "job", "job": job_to_event(job, public=not self.admin)})

    def _wanted_groups(self) -> list[str]:
        if self.job_id is not None:
            return [f"job.{self.job_id}"]
        if self.projects is None:
            return ["jobs.all"]
        return [f"jobs.project.{pid}" for pid in sorted(self.projects)]

    async def _join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.append(group)

    @database_sync_to_async
    def _access(self):
        """(admin, visible project ids or None, the watched job or None), read afresh;
        None when the user is gone or deactivated."""
        user = get_user_model().objects.filter(pk=self.user_id, is_active=True).first()
        if user is None or not self._session_still_valid(user):
            return None
        ids = visible_project_ids(user)
        job = None
        if self.job_id is not None:
            job = job_list_for(user).filter(id=self.job_id).first()
        return user.is_staff, (None if ids is None else set(ids)), job

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
        await self.disconnect(code)  # a refused handshake may never get a disconnect
        await self.close(code=code)

    async def _shut(self, code: int) -> bool:
        self.closing = True  # nothing more is sent, even before the disconnect arrives
        await self.close(code=code)
        return False

    async def _recheck(self) -> bool:
        """Refresh the cached access; close the socket if it lost any. False when closed."""
        access = await self._access()
        self.checked_at = time.monotonic()
        if access is None:
            return await self._shut(CLOSE_SIGNED_OUT)
        admin, projects, job = access
        if self.job_id is not None and job is None:
            return await self._shut(CLOSE_NOT_FOUND)
        lost = (self.admin and not admin) or (
            projects is not None and (self.projects is None or self.projects - projects)
        )
        if lost and self.job_id is None:
            return await self._shut(CLOSE_ACCESS_LOST)
        self.admin, self.projects = admin, projects
        if self.job_id is None:  # gained a project (or admin): listen to it too
            for group in self._wanted_groups():
                if group not in self.groups_joined:
                    await self._join(group)
        return True

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", None) or []:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    async def access_changed(self, event):
        if not self.closing:
            await self._recheck()

    async def job_update(self, event):
        if self.closing:
            return
        if time.monotonic() - self.checked_at > RECHECK_SECONDS and not await self._recheck():
            return
        job = event["job"]
        if not job_event_visible(self.projects, job.get("project")):
            return
        await self.send_json({"type": "job", "job": job if self.admin else event["public"]})
