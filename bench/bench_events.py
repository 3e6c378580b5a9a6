"""Event to browser: latency of a status event to N connected /ws/status/ clients, and the
server memory each idle socket holds.

What runs: the real ASGI server, the Procfile's `web:` line as `make run` starts it
(bench_load.Server: uvicorn, websockets protocol, its default number of worker processes, on a
free 127.0.0.1 port), a fresh one for each N, serving the bench's own database (see
bench_instances.isolate_environment: a temporary SQLite, flushed) and Redis database; the
channel layer's keys in that Redis database are removed first. Seeded here: an admin with a
session, one project, one host and INSTANCES instances (plain rows: no libvirt involved).

The clients are the `websockets` library in this process, N = 1, 100 and 1,000 of them, all
signed in with the one admin session cookie and sending the panel's Origin, as a browser
would (with permessage-deflate, which browsers negotiate too). Each gets its snapshot; then,
EVENTS times, one instance's state change is published through cloudpanel.live.publisher
(apublish of instances.events.instance_message: the message the instance_changed receiver
sends) and the time from just before the publish until each client has the frame is taken.
The next event goes once every client has the last one (or after EVENT_TIMEOUT), so this
measures latency under fan-out, not a saturated stream. The client side is one Python
process on the same 2 CPUs: its own receive time is inside the figures.

Memory per idle socket: the server's RSS (every process of its session, from /proc) once N
clients are connected and their snapshots sent, minus the RSS before they connected (after
one warm-up socket), over N.

Knobs: BENCH_EVENTS_CLIENTS (default "1,100,1000"), BENCH_EVENTS_EVENTS (20 per N),
BENCH_EVENTS_INSTANCES (100).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

from .common import percentile

CLIENT_COUNTS = [
    int(n) for n in os.environ.get("BENCH_EVENTS_CLIENTS", "1,100,1000").split(",") if n.strip()
]
EVENTS = int(os.environ.get("BENCH_EVENTS_EVENTS", "20"))
INSTANCES = int(os.environ.get("BENCH_EVENTS_INSTANCES", "100"))
CONNECT_CONCURRENCY = 50  # handshakes in flight at once
EVENT_TIMEOUT = 10.0  # seconds for every client to get one event
GAP = 0.05  # seconds between events, once the last one reached everyone
GOAL_P95_MS = 250.0  # at 1,000 clients (issue 9)


# --------------------------------------------------------------------------- setup


def _seed() -> tuple[str, list]:
    """An admin's session cookie (name=value) and the instances whose changes are published."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from cloudpanel.projects.services import project_get_default
    from hosts.models import Host
    from instances.models import Flavor, Instance

    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    admin = get_user_model().objects.create_user(
        "bench-admin", password="bench-password-1", is_staff=True
    )
    project = project_get_default()
    host = Host.objects.create(
        name="hv00", uri="qemu+tcp://127.0.0.1:20900/system", transport="tcp", status="online"
    )
    flavor = Flavor.objects.create(name="bench-small", vcpus=1, ram_mib=512, disk_gib=1)
    Instance.objects.bulk_create(
        Instance(name=f"vm{i:04d}", project=project, owner=admin, flavor=flavor, host=host,
                 domain_name=f"cp-{i}", state="running")
        for i in range(max(INSTANCES, EVENTS))  # each event of a row changes another one
    )  # fmt: skip
    client = Client()
    client.force_login(admin)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}", list(Instance.objects.order_by("id"))


def _clear_channel_layer() -> None:
    """Group memberships a killed run left in the bench's Redis database."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("asgi*", count=1000):
        client.delete(key)


def _raise_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def _server_rss_bytes(server) -> int:
    """Resident memory of every process of the server's session."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--sid", str(server.proc.pid)], capture_output=True, text=True
    ).stdout
    total = 0
    for pid in out.split():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def _stop(server) -> None:
    """Stop the server and every process of its session. A uvicorn worker can wait forever
    for one socket's channel-layer receive after SIGTERM (a cancelled BZPOPMIN that
    channels-redis retries): what is left after a grace period is killed."""
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ps", "-o", "pid=,stat=", "--sid", str(server.proc.pid)], capture_output=True,
            text=True,
        ).stdout  # fmt: skip
        if all(line.split()[-1].startswith("Z") for line in out.splitlines()):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the clients


class Clients:
    """N status sockets; each notes when every instance frame reached it."""

    def __init__(self, port: int, cookie: str):
        self.url = f"ws://127.0.0.1:{port}/ws/status/"
        self.origin = f"http://127.0.0.1:{port}"
        self.cookie = cookie
        self.sockets: list = []
        self.readers: list[asyncio.Task] = []
        self.snapshots = 0
        self.arrivals: dict[int, list[float]] = {}  # instance id -> first receive times
        self.duplicates = 0  # frames a socket got again (channels-redis: at least once)
        self.changed = asyncio.Event()

    async def _open_one(self, gate: asyncio.Semaphore):
        from websockets.asyncio.client import connect

        async with gate:
            socket = await connect(
                self.url,
                origin=self.origin,
                additional_headers={"Cookie": self.cookie},
                max_size=None,
                ping_interval=None,
                proxy=None,
                open_timeout=60,
                compression=None if os.environ.get("BENCH_EVENTS_DEFLATE") == "0" else "deflate",
            )
            first = json.loads(await socket.recv())
            if first.get("type") != "snapshot":
                raise RuntimeError(f"the first frame was not a snapshot: {first.get('type')}")
            self.snapshots += 1
        return socket

    async def open(self, count: int) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        opened = await asyncio.gather(*(self._open_one(gate) for _ in range(count)))
        self.sockets.extend(opened)
        self.readers.extend(asyncio.create_task(self._read(s)) for s in opened)

    async def _read(self, socket) -> None:
        from websockets.exceptions import ConnectionClosed

        seen: set[tuple[int, str]] = set()
        with contextlib.suppress(ConnectionClosed):
            async for raw in socket:
                now = time.perf_counter()
                if len(raw) > 4096 or not raw.startswith('{"type": "instance"'):
                    continue
                view = json.loads(raw)["instance"]
                if (view["id"], view["state"]) in seen:
                    self.duplicates += 1
                    continue
                seen.add((view["id"], view["state"]))
                self.arrivals.setdefault(view["id"], []).append(now)
                self.changed.set()

    async def wait_all(self, instance_id: int, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrivals.get(instance_id, ())) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)


async def _measure(port: int, cookie: str, instances: list, count: int, server) -> dict:
    from cloudpanel.live.publisher import apublish, groups_for
    from instances.events import instance_message

    warm = Clients(port, cookie)  # imports, connections and caches of the server warmed up
    await warm.open(2)
    await warm.close()
    await asyncio.sleep(1.0)
    rss_before = _server_rss_bytes(server)

    clients = Clients(port, cookie)
    started = time.perf_counter()
    await clients.open(count)
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(1.0)  # the last snapshots' garbage collected, the sockets idle
    rss_after = _server_rss_bytes(server)

    latencies: list[float] = []
    delivered = 0
    server_cpu, own = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
    for k in range(EVENTS):
        instance = instances[k % len(instances)]
        instance.state = "paused" if instance.state == "running" else "running"
        message = instance_message(instance)
        sent = time.perf_counter()
        await apublish(groups_for(instance.project_id), message)
        await clients.wait_all(instance.pk, count, EVENT_TIMEOUT)
        times = clients.arrivals.pop(instance.pk, [])
        delivered += len(times)
        latencies.extend(t - sent for t in times)
        await asyncio.sleep(GAP)
    server_cpu = server.cpu_seconds() - server_cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
    await clients.close()
    return {
        "clients": count,
        "latencies": latencies,
        "delivered": delivered,
        "expected": count * EVENTS,
        "connect_seconds": connect_seconds,
        "rss_delta": rss_after - rss_before,
        "duplicates": clients.duplicates,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


# --------------------------------------------------------------------------- the run


def run() -> None:
    from .bench_instances import BENCH_DIR, _isolation_problem
    from .bench_load import Server, _procfile_web_line

    problem = _isolation_problem()
    if problem:
        raise RuntimeError(f"events bench: {problem}")
    _raise_open_files_limit(max(CLIENT_COUNTS) + 512)
    cookie, instances = _seed()
    _clear_channel_layer()

    results = []
    for count in CLIENT_COUNTS:
        server = Server(f"{count} clients", None, BENCH_DIR / f"server-events-{count}")
        try:
            server.start()
            results.append(asyncio.run(_measure(server.port, cookie, instances, count, server)))
            results[-1]["processes"] = server.worker_processes()
        finally:
            _stop(server)
        _clear_channel_layer()

    print(f"\n== events: status event to /ws/status/ clients ({INSTANCES} instances, admin view)")
    print(f"server: Procfile web line: {_procfile_web_line()}")
    print(f"events: {EVENTS} instance state changes per row through cloudpanel.live.publisher; "
          f"clients: websockets in this process, on {os.cpu_count()} CPUs shared with the "
          "server")  # fmt: skip
    print(
        f"{'clients':>8} {'proc':>5} {'delivered':>12} {'dup':>4} {'p50':>9} {'p95':>9} {'max':>9} "
        f"{'p95/1':>7} {'connect':>9} {'RSS/socket':>11} {'srv cpu/ev':>11} {'cli cpu/ev':>11}"
    )
    base_p95 = None
    for row in results:
        p50 = percentile(row["latencies"], 50) * 1000
        p95 = percentile(row["latencies"], 95) * 1000
        top = max(row["latencies"], default=float("nan")) * 1000
        base_p95 = base_p95 or p95
        per_socket = row["rss_delta"] / row["clients"] / 1024
        print(
            f"{row['clients']:>8} {row['processes']:>5} "
            f"{row['delivered']:>6}/{row['expected']:<5} {row['duplicates']:>4} "
            f"{p50:>7.1f}ms {p95:>7.1f}ms "
            f"{top:>7.1f}ms {p95 / base_p95:>6.1f}x {row['connect_seconds']:>8.1f}s "
            f"{per_socket:>8.1f}KiB {row['server_cpu'] / EVENTS * 1000:>9.1f}ms "
            f"{row['client_cpu'] / EVENTS * 1000:>9.1f}ms"
        )
    print("(RSS/socket: server RSS with the clients connected and idle, minus before, over N;"
          " noise at N=1. dup: frames a socket got twice (channels-redis delivers at least once). "
          "cpu/ev: CPU time of the server's processes and of this client process during the "
          "events, per event, background work such as access re-checks included)")  # fmt: skip
    print(f"machine load average during the run: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    for row in results:
        if row["clients"] >= 1000:
            p95 = percentile(row["latencies"], 95) * 1000
            verdict = (
                "met" if p95 < GOAL_P95_MS and row["delivered"] == row["expected"] else ("NOT met")
            )
            print(f"goal: p95 < {GOAL_P95_MS:.0f} ms at {row['clients']} clients: "
                  f"{p95:.1f} ms, {verdict}")  # fmt: skip
