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
def live_watcher(transactional_db, settings, lab, tmp_path):
    """Start the host watcher (`manage.py watch_hosts`) as its own process on the test
    database, the real Redis and the lab's sockets: live_watcher(stats_interval=1) -> a
    Popen whose check() fails the test if the watcher exited. Stopped at the end."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from ..conftest import _database_url_for_subprocess

    started: list[subprocess.Popen] = []
    manage = Path(__file__).resolve().parents[2] / "manage.py"

    def start(*, stats_interval: float | None = None) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url_for_subprocess(),
            "REDIS_URL": settings.REDIS_URL,
            "LIBVIRT_SOCKET_DIRS": ",".join(settings.LIBVIRT_SOCKET_DIRS),
        }
        if stats_interval is not None:
            env["WATCHER_STATS_INTERVAL"] = str(stats_interval)
        # A file, not a pipe: a chatty watcher never blocks on its output.
        log = tmp_path / f"watch_hosts-{len(started)}.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        proc = subprocess.Popen(
            [sys.executable, str(manage), "watch_hosts"],
            env=env,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(fd)

        def check() -> None:
            if proc.poll() is not None:
                output = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"watch_hosts exited with {proc.returncode}:\n{output}")

        proc.check = check
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
