"""/ws/status/: a snapshot of what the user may see, then deltas (being written)."""

from __future__ import annotations

from cloudpanel.websockets import NotFoundConsumer


class StatusConsumer(NotFoundConsumer):
    pass
