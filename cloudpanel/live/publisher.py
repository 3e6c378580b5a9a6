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

import logging

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


def publish(groups: list[str], message: dict) -> None:
    """Send `message` to every group in one event loop (one Redis connection)."""
    try:
        async_to_sync(apublish)(groups, message)
    except Exception as exc:
        log.warning("could not publish %s: %s", message.get("type"), exc)
