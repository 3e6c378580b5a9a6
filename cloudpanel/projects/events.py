"""Access changes as socket events: a user's open sockets re-read what they may see.

Kept apart from the services so that no service imports Channels (see the import contracts
in pyproject.toml).
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


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
        group = f"user.{user_id}"  # named in the message for the hub (cloudpanel.live.hub)
        async_to_sync(layer.group_send)(group, {"type": "access.changed", "group": group})
    except Exception as exc:
        log.warning("could not tell user %s's sockets about an access change: %s", user_id, exc)
