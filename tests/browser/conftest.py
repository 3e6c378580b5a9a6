"""Browser-test fixtures: the real ASGI app (HTTP + WebSockets) under uvicorn."""

from __future__ import annotations

import pytest


@pytest.fixture
def asgi_url(transactional_db):
    """The project's ASGI app (HTTP + Channels) under uvicorn, in a thread of this process."""
    import socket
    import threading
    import time

    import uvicorn

    from cloudpanel.asgi import application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
