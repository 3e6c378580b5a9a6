"""The web server as the Procfile runs it: one worker process per CPU by default (Django under
ASGI runs every sync view of a process in one thread, so processes are what scale), and
static files streamed asynchronously (no sync-iterator warning, no thread per file)."""

import http.client
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

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
