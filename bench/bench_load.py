"""Load: concurrent clients on the instance list and the overview, N workers vs one.

What runs: the real ASGI server, started from the `web:` line of the Procfile exactly as
honcho does (`/bin/sh -c LINE`), twice at once on free 127.0.0.1 ports: once with its default
number of worker processes and once with CLOUDPANEL_WEB_WORKERS=1. Both serve the bench's own
database (see bench_instances.isolate_environment: a temporary SQLite unless
BENCH_DATABASE_URL says otherwise; it is flushed), seeded here with 10 hosts (plain rows, as
after a sync: a list never asks libvirt), 100 instances, 20 of them with a running job, and
30 finished jobs. The server runs as `make run` will, with DEBUG off (BENCH_DEBUG=true to
measure debug mode), its access log on and discarded.

The load generator is plain Python in this process: CLIENTS threads, each with its own
keep-alive `http.client` connection, share a budget of REQUESTS requests per target and stop
at TIME_CAP seconds whichever comes first. Targets, alternating between the two servers so
drift on a shared machine hits both alike:

- `GET /api/v1/instances/` with a token (`Authorization: Token ...`);
- `GET /` (the overview) with an admin's session cookie;
- then the list again from one client, one request after the other (the single-request
  latency).

Each row reports throughput, p50 and p99 latency (client-side, request sent until the body
has been read), the server's CPU time per request (user + system of all its processes, from
/proc: steadier than throughput on a shared machine), 5xx answers and other failures; the
ratio is N workers over one. Each row's budget is spent in ROUNDS slices, the servers taking
turns.

BENCH_LOAD_BASELINE=<git revision> compares code instead: this tree against that revision
(exported with `git archive` into the bench's directory, run with this venv), both with the
default number of workers; the ratio is this tree over the baseline. The baseline gets a
database of its own, migrated and seeded by its own code, so that a revision with another
schema serves the same fleet in the shape it knows.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import percentile

CLIENTS = int(os.environ.get("BENCH_LOAD_CLIENTS", "20"))
REQUESTS = int(os.environ.get("BENCH_LOAD_REQUESTS", "2000"))  # per target and server
TIME_CAP = float(os.environ.get("BENCH_LOAD_SECONDS", "30"))  # per target and server
ROUNDS = 4  # slices of each row, the servers taking turns (drift hits all alike)
WARMUP = 200  # requests per target before measuring: every worker imports and warms up
SEQUENTIAL = 300
HOSTS, INSTANCES, RUNNING_JOBS, FINISHED_JOBS = 10, 100, 20, 30
START_TIMEOUT = 60.0

# Measured from outside before this benchmark existed (issue 6, item 10): one uvicorn process.
ISSUE_BASELINE = {"list": 40.0, "overview": 15.0}  # req/s, 20 clients
GOALS = {"list": 4 * ISSUE_BASELINE["list"], "overview": 4 * ISSUE_BASELINE["overview"]}
GOAL_SINGLE_P50_MS = 15.0

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- seeding


def _seed() -> tuple[str, str]:
    """The fleet, an admin, its API token and a session cookie (name=value)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from cloudpanel.jobs.models import Job
    from cloudpanel.projects.models import Project
    from cloudpanel.projects.services import project_get_default
    from hosts.models import Host
    from images.models import Image
    from instances.models import Flavor, Instance, Volume

    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    admin = get_user_model().objects.create_user(
        "bench-admin", password="bench-password-1", is_staff=True
    )
    token = Token.objects.create(user=admin).key
    projects = [project_get_default(), Project.objects.create(name="bench-other")]

    gib = 1024**3
    caps = {"cpus": 32, "memory_bytes": 128 * gib, "kvm": True, "arch": "x86_64"}
    pools = [{"name": "default", "active": True, "capacity_bytes": 2000 * gib}]
    hosts = Host.objects.bulk_create(
        Host(
            name=f"hv{i:02d}",
            uri=f"qemu+tcp://127.0.0.1:{20000 + i}/system",
            transport="tcp",
            status="online" if i else "offline",
            capabilities=caps if i % 3 else {**caps, "kvm": False},
            storage_pools=pools,
        )
        for i in range(HOSTS)
    )
    flavor = Flavor.objects.create(name="bench-small", vcpus=2, ram_mib=2048, disk_gib=20)
    image = Image.objects.create(
        name="bench-cirros", disk_format="qcow2", project=projects[0], status="active"
    )
    instances = Instance.objects.bulk_create(
        Instance(
            name=f"vm{i:03d}",
            project=projects[i % 2],
            owner=admin,
            flavor=flavor,
            image=image,
            host=hosts[i % HOSTS],
            domain_name=f"cp-{i}",
            state="running",
            mac_address=f"52:54:00:00:{i // 256:02x}:{i % 256:02x}",
            ip_addresses=[f"192.168.122.{i + 2}"],
        )
        for i in range(INSTANCES)
    )
    Volume.objects.bulk_create(
        Volume(host=instance.host, instance=instance, pool="default", name=f"cp-{i}.qcow2",
               capacity_bytes=20 * gib, state="ready")
        for i, instance in enumerate(instances)
    )  # fmt: skip
    for i, instance in enumerate(instances[:RUNNING_JOBS]):
        job = Job.objects.create(
            kind="instance.reboot", target_type="instance", target_id=instance.pk,
            target_name=instance.name, status="running", progress=40, step="rebooting",
            requested_by=admin, project=instance.project, log=f"reboot {i}\n",
        )  # fmt: skip
        Instance.objects.filter(pk=instance.pk).update(current_job=job)
    for i in range(FINISHED_JOBS):
        Job.objects.create(
            kind="instance.start", target_type="instance", target_id=instances[i].pk,
            target_name=instances[i].name, status="succeeded", progress=100, step="done",
            requested_by=admin, project=instances[i].project, exclusive=False,
        )  # fmt: skip

    client = Client()
    client.force_login(admin)
    from django.conf import settings

    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return token, cookie


def _seed_with(tree: Path, database_url: str) -> tuple[str, str]:
    """_seed() as `tree`'s own code does it, into `database_url` (a baseline's database)."""
    from django.conf import settings

    code = (
        "import json, django; django.setup(); from bench.bench_load import _seed; "
        "print(json.dumps(_seed()))"
    )
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": settings.SECRET_KEY}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    token, cookie = json.loads(out.strip().splitlines()[-1])
    return token, cookie


# --------------------------------------------------------------------------- the server


def _procfile_web_line(tree: Path = REPO) -> str:
    for line in (tree / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise RuntimeError("the Procfile has no web: line")


def _export(revision: str, into: Path) -> Path:
    """That revision's files (`git archive`), with this tree's venv: uvicorn imports the
    app from its working directory first, before the venv's editable install."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / ".venv").symlink_to(REPO / ".venv")
    return into


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The Procfile's web process in its own session (stopped with its whole group)."""

    def __init__(
        self,
        label: str,
        workers: int | None,
        var_dir: Path,
        cwd: Path = REPO,
        database_url: str | None = None,
    ):
        self.label = label
        self.workers = workers
        self.var_dir = var_dir
        self.cwd = cwd
        self.database_url = database_url
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from django.conf import settings

        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "cloudpanel.settings",
            "CLOUDPANEL_HOST": "127.0.0.1",
            "CLOUDPANEL_PORT": str(self.port),
            "CLOUDPANEL_VAR_DIR": str(self.var_dir),
            # The bench signs the session with this key: the server must check it with it.
            "SECRET_KEY": settings.SECRET_KEY,
            "DEBUG": os.environ.get("BENCH_DEBUG", "false"),
            "LOG_LEVEL": "WARNING",
        }
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env.pop("WEB_CONCURRENCY", None)
        env.pop("CLOUDPANEL_WEB_WORKERS", None)
        if self.workers is not None:
            env["CLOUDPANEL_WEB_WORKERS"] = str(self.workers)
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", _procfile_web_line(self.cwd)],
            cwd=self.cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(self.var_dir / "server.log").open("wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} server exited: see {self.var_dir}/server.log")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/login/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} server did not answer within {START_TIMEOUT:.0f} s")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes so far."""
        ticks = 0
        out = subprocess.run(
            ["ps", "-o", "pid=", "--sid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        for pid in out.split():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def worker_processes(self) -> int:
        """Processes serving requests: the workers a supervisor spawned, else the one."""
        out = subprocess.run(
            ["ps", "-ww", "-o", "args=", "--sid", str(self.proc.pid)],
            capture_output=True,
            text=True,
        ).stdout
        return sum("spawn_main" in line for line in out.splitlines()) or 1

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# --------------------------------------------------------------------------- the load


@dataclass
class Result:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    cpu_seconds: float = 0.0  # the server's

    def add(self, other: Result) -> None:
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds
        self.latencies += other.latencies
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.errors += other.errors

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / len(self.latencies) if self.latencies else float("nan")

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def other_failures(self) -> int:
        return self.errors + sum(
            n for status, n in self.statuses.items() if status != 200 and status < 500
        )


def drive(port: int, path: str, headers: dict, clients: int, budget: int, cap: float) -> Result:
    """`clients` threads share `budget` requests, each on its own keep-alive connection."""
    result = Result()
    lock = threading.Lock()
    left = [budget]
    deadline = time.monotonic() + cap
    headers = {"Host": f"127.0.0.1:{port}", **headers}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            start = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                with lock:
                    result.errors += 1
                continue
            elapsed = time.perf_counter() - start
            with lock:
                result.latencies.append(elapsed)
                result.statuses[response.status] = result.statuses.get(response.status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- report


def _row(case: str, result: Result) -> str:
    ms = [v * 1000 for v in result.latencies]
    return (
        f"{case:<34} {len(ms):>5} {result.rate:>8.1f} {percentile(ms, 50):>9.1f}"
        f" {percentile(ms, 99):>9.1f} {result.cpu_ms:>7.2f} {result.server_errors:>5}"
        f" {result.other_failures:>6}"
    )


def _header(title: str) -> None:
    print(f"\n== {title}")
    print(
        f"{'case':<34} {'n':>5} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'cpu ms':>7}"
        f" {'5xx':>5} {'other':>6}"
    )


def _describe(revision: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s", revision],
        capture_output=True, text=True,
    ).stdout.strip()[:80]  # fmt: skip


def run() -> None:
    from .bench_instances import BENCH_DIR, _isolation_problem

    problem = _isolation_problem()
    if problem:
        raise RuntimeError(f"load bench: {problem}")

    def targets_for(token: str, cookie: str) -> dict:
        return {
            "list": ("/api/v1/instances/", {"Authorization": f"Token {token}"}),
            "overview": ("/", {"Cookie": cookie}),
        }

    targets = targets_for(*_seed())
    baseline = os.environ.get("BENCH_LOAD_BASELINE")
    if baseline:
        tree = _export(baseline, BENCH_DIR / "baseline-tree")
        own_db = f"sqlite:///{BENCH_DIR / 'baseline.sqlite3'}"
        servers = [
            Server("this tree", None, BENCH_DIR / "server-multi"),
            Server(f"baseline {baseline}", None, BENCH_DIR / "server-baseline", tree, own_db),
        ]
        # Each server is asked with the credentials of its own database.
        theirs = targets_for(*_seed_with(tree, own_db))
        asked = {servers[0].label: targets, servers[1].label: theirs}
    else:
        servers = [
            Server("default workers", None, BENCH_DIR / "server-multi"),
            Server("1 worker", 1, BENCH_DIR / "server-single"),
        ]
        asked = {server.label: targets for server in servers}
    try:
        for server in servers:
            server.start()
        for server in servers:
            for path, headers in asked[server.label].values():
                drive(server.port, path, headers, CLIENTS, WARMUP, TIME_CAP)
        names = {s.label: f"{s.label} ({s.worker_processes()} proc)" for s in servers}
        rows = [(target, CLIENTS, REQUESTS, target) for target in targets]
        rows.append(("single", 1, SEQUENTIAL, "list"))
        results = {(row[0], s.label): Result() for row in rows for s in servers}
        for target, clients, budget, asks in rows:
            for _ in range(ROUNDS):
                for server in servers:
                    path, headers = asked[server.label][asks]
                    cpu = server.cpu_seconds()
                    result = drive(
                        server.port, path, headers, clients, budget // ROUNDS, TIME_CAP / ROUNDS
                    )
                    result.cpu_seconds = server.cpu_seconds() - cpu
                    results[target, server.label].add(result)
    finally:
        for server in servers:
            server.stop()

    debug = os.environ.get("BENCH_DEBUG", "false")
    print(f"\n== load: {HOSTS} hosts, {INSTANCES} instances, DEBUG={debug}")
    print(f"server: Procfile web line: {_procfile_web_line()}")
    if baseline:
        print(f"code: this tree vs {baseline} ({_describe(baseline)})")
    print(f"load: {CLIENTS} clients (threads, keep-alive), at most {REQUESTS} requests or "
          f"{TIME_CAP:.0f} s per row, on {os.cpu_count()} CPUs shared with the server")  # fmt: skip
    multi, single = (s.label for s in servers)
    for target, title in (
        ("list", f"GET /api/v1/instances/ ({INSTANCES} instances, token), {CLIENTS} clients"),
        ("overview", f"GET / overview ({HOSTS} hosts, admin session), {CLIENTS} clients"),
        ("single", "GET /api/v1/instances/, one client, sequential"),
    ):
        _header(title)
        for label in (multi, single):
            print(_row(names[label], results[target, label]))
        ratio = results[target, multi].rate / max(results[target, single].rate, 1e-9)
        cpu = results[target, multi].cpu_ms / results[target, single].cpu_ms
        print(f"ratio {names[multi]!r} / {names[single]!r}: req/s {ratio:.2f}x, cpu/req {cpu:.2f}x")

    print("\n== goals (issue 6 item 10: 4x the throughput measured before, list alone < 15 ms)")
    for target in ("list", "overview"):
        rate = results[target, multi].rate
        verdict = "met" if rate >= GOALS[target] else "NOT met"
        print(
            f"{target:<10} {rate:>7.1f} req/s, goal {GOALS[target]:.0f} "
            f"(4x {ISSUE_BASELINE[target]:.0f}): {verdict}"
        )
    p50 = percentile(results["single", multi].latencies, 50) * 1000
    verdict = "met" if p50 < GOAL_SINGLE_P50_MS else "NOT met"
    print(f"{'single':<10} {p50:>7.1f} ms p50, goal < {GOAL_SINGLE_P50_MS:.0f} ms: {verdict}")
