"""Live job progress over a WebSocket: /ws/jobs/ (all visible) or /ws/jobs/<id>/."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from cloudpanel.projects.access import visible_project_ids

from .selectors import jobs_visible_to
from .services import job_to_event


class JobConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        job_id = self.scope["url_route"]["kwargs"].get("job_id")
        self.groups_joined = await self._groups(user, job_id)
        if self.groups_joined is None:
            await self.close(code=4404)  # not found, or not the user's to see
            return
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        if job_id is not None:
            await self.send_json({"type": "job", "job": await self._snapshot(user, job_id)})

    @database_sync_to_async
    def _groups(self, user, job_id):
        if job_id is not None:
            if not jobs_visible_to(user).filter(id=job_id).exists():
                return None
            return [f"job.{job_id}"]
        ids = visible_project_ids(user)
        if ids is None:
            return ["jobs.all"]
        return [f"jobs.project.{pid}" for pid in ids]

    @database_sync_to_async
    def _snapshot(self, user, job_id):
        return job_to_event(jobs_visible_to(user).get(id=job_id))

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", None) or []:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def job_update(self, event):
        await self.send_json({"type": "job", "job": event["job"]})
