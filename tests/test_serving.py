"""The web server as the Procfile runs it: one worker process per CPU by default (a process's
synchronous Django code shares one GIL, so processes are what scale), and static files
streamed asynchronously (no sync-iterator warning, no thread per file). In-process: the HTTP
app runs the middleware chain and the view in one trip to the sync thread."""

import asyncio
import http.client
import os
import shlex
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync

REPO = Path(__file__).resolve().parent.parent
SYNC_ITERATOR_WARNING = "must consume synchronous iterators"


def web_line() -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("no web: line in the Procfile")


def workers_expression() -> str:
    words = shlex.split(web_line().replace("$", "\\$"))  # keep the expansions unexpanded
    return words[words.index("--workers") + 1]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, str(len(os.sched_getaffinity(0)))),
        ({"WEB_CONCURRENCY": "3"}, "3"),
        ({"CLOUDPANEL_WEB_WORKERS": "5", "WEB_CONCURRENCY": "3"}, "5"),
    ],
)
def test_worker_count_defaults_to_the_cpus_and_is_configurable(env, expected):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WEB_CONCURRENCY", "CLOUDPANEL_WEB_WORKERS")
    }
    out = subprocess.run(
        ["/bin/sh", "-c", f"echo {workers_expression()}"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def served(tmp_path):
    """The Procfile's web line run as honcho runs it, with its default worker count."""
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WEB_CONCURRENCY", "CLOUDPANEL_WEB_WORKERS")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="cloudpanel.settings",
        CLOUDPANEL_HOST="127.0.0.1",
        CLOUDPANEL_PORT=str(port),
        CLOUDPANEL_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SECRET_KEY="test-serving-" + "k" * 40,
        DEBUG="false",
    )
    log = tmp_path / "server.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", web_line()], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if _get(port, "/login/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not answer:\n" + log.read_text()
            time.sleep(0.2)
        yield port, proc, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _worker_processes(session_id: int) -> int:
    out = subprocess.run(
        ["ps", "-ww", "-o", "args=", "--sid", str(session_id)], capture_output=True, text=True
    ).stdout
    return sum("spawn_main" in line for line in out.splitlines())


def test_procfile_server_runs_a_worker_per_cpu_and_streams_static_files(served):
    port, proc, log = served
    deadline = time.monotonic() + 30
    while _worker_processes(proc.pid) < len(os.sched_getaffinity(0)):
        assert time.monotonic() < deadline, "fewer worker processes than CPUs"
        time.sleep(0.2)
    assert _worker_processes(proc.pid) == len(os.sched_getaffinity(0))

    css = (REPO / "static/css/cloudpanel.css").read_bytes()
    for _ in range(4):  # several connections, so more than one worker serves it
        status, body = _get(port, "/static/css/cloudpanel.css")
        assert status == 200 and body == css
    status, body = _get(port, "/static/rest_framework/css/default.css")  # an app's static file
    assert status == 200 and body
    assert _get(port, "/static/no-such-file.css")[0] == 404
    assert SYNC_ITERATOR_WARNING not in log.read_text()


async def _asgi_get(app, path: str) -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    messages, received = [], []

    async def receive():
        if not received:
            received.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return messages[0]["status"], body


@pytest.mark.django_db(transaction=True)
async def test_the_http_app_runs_middleware_and_view_in_one_thread_trip(monkeypatch):
    """Django's async chain takes two trips to the sync thread per synchronous middleware;
    ours one for the chain and the view. Static files still stream from ServeStatic's async
    iterator."""
    from django.core.handlers.asgi import ASGIHandler

    from cloudpanel.asgi import application

    trips = []
    call = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        trips.append(self.func)
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    assert (await _asgi_get(application, "/login/"))[0] == 200
    ours = [getattr(func, "__qualname__", repr(func)) for func in trips]
    trips.clear()
    assert (await _asgi_get(ASGIHandler(), "/login/"))[0] == 200
    # request_started, the chain, closing the response: ServeStatic is asked only for
    # static paths (cloudpanel.middleware.StaticFilesMiddleware), so nothing else hops.
    assert len(ours) <= 3 and "SyncChainASGIHandler._get_response_in_thread" in ours, ours
    assert len(trips) >= 2 * len(ours)

    css = (REPO / "static/css/cloudpanel.css").read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await _asgi_get(application, "/static/css/cloudpanel.css") == (200, css)
    assert not [w for w in caught if SYNC_ITERATOR_WARNING in str(w.message)]


@pytest.mark.django_db(transaction=True)
async def test_the_http_app_starts_no_thread_per_request(monkeypatch):
    """Django's handler gives every request a thread of its own (a ThreadSensitiveContext);
    ours runs the chain on the loop's pool of threads, which it reuses."""
    import threading

    from django.core.handlers.asgi import ASGIHandler

    from cloudpanel.asgi import application

    started = []
    start = threading.Thread.start

    def counted(self):
        started.append(self.name)
        return start(self)

    monkeypatch.setattr(threading.Thread, "start", counted)
    for app in (application, ASGIHandler()):
        for _ in range(3):  # the pool's threads start on first use
            assert (await _asgi_get(app, "/login/"))[0] == 200
    started.clear()
    for _ in range(5):
        assert (await _asgi_get(application, "/login/"))[0] == 200
    assert started == []
    for _ in range(5):
        assert (await _asgi_get(ASGIHandler(), "/login/"))[0] == 200
    assert len(started) >= 5  # the comparison: one per request
