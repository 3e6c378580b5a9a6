"""Project writes: the default project, memberships, and telling open sockets about access
changes."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .models import DEFAULT_PROJECT_NAME, Membership, Project

log = logging.getLogger(__name__)


def project_get_default() -> Project:
    """The project that API calls use when they name none (created on first use)."""
    project, _ = Project.objects.get_or_create(
        name=DEFAULT_PROJECT_NAME, defaults={"description": "Default project"}
    )
    return project


def membership_set(*, project: Project, user, role: str = Membership.Role.MEMBER) -> Membership:
    """Add the user to the project, or change their role there."""
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership  # the post_save signal tells the user's sockets


def membership_remove(*, project: Project, user) -> bool:
    """Take the user out of the project. Their open sockets stop getting its events (the
    post_delete signal below tells them, as for memberships deleted any other way)."""
    deleted, _ = Membership.objects.filter(project=project, user=user).delete()
    return bool(deleted)


def access_changed(user_id: int | None) -> None:
    """Tell the user's open sockets to re-read their access, once the change is committed.

    The consumers also re-check on their own (cloudpanel.jobs.consumers.RECHECK_SECONDS), so
    a lost message (Redis down) delays the cut-off instead of cancelling it.
    """
    if user_id is None:
        return
    transaction.on_commit(lambda: _send_access_changed(user_id))


def _send_access_changed(user_id: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(f"user.{user_id}", {"type": "access.changed"})
    except Exception as exc:
        log.warning("could not tell user %s's sockets about an access change: %s", user_id, exc)
