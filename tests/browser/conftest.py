"""Browser-test fixtures: the real ASGI app (HTTP + WebSockets) under uvicorn."""

from __future__ import annotations

import pytest


@pytest.fixture
def asgi_url(transactional_db):
    """The project's ASGI app (HTTP + WebSockets) under uvicorn, in a thread of this process."""
    from ..conftest import serve_asgi

    with serve_asgi() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def live_watcher(start_watcher, lab):
    """live_watcher(stats_interval=1) -> the host watcher (`manage.py watch_hosts`) as its own
    process on the test database, the real Redis and the lab's sockets; its check() fails the
    test if it exited. Stopped at the end."""

    def start(*, stats_interval: float | None = None):
        extra = {} if stats_interval is None else {"WATCHER_STATS_INTERVAL": str(stats_interval)}
        return start_watcher(**extra)

    return start
