"""Instances on the real libvirt lab: API accept, job dispatch, provisioning, create + delete.

What runs: a lab of two isolated libvirtd hosts started here (host 0 may use KVM, host 1 is
TCG only), a real Celery worker subprocess (prefork, concurrency 1, as tests' live_worker),
Redis and a database. Requests go through Django's whole stack in-process (DRF APIClient with
a token: middleware, authentication, validation, scheduler, inserts, on-commit enqueue).

Isolation: importing this module (bench/__main__.py does, before Django reads its settings)
points DATABASE_URL at a SQLite file in a temporary directory, REDIS_URL at Redis database 14
and IMAGE_STORE at the same temporary directory; the worker gets that environment. The
developer's database, queue and image store are never touched. BENCH_DATABASE_URL and
BENCH_REDIS_URL choose others (that database is flushed, that queue purged).

Each measured round creates one instance on each host (the order alternates by round), waits
for it to run, then deletes it, so every cycle yields every figure:

- accept: POST /api/v1/instances/ (and DELETE) until the 202 answer;
- dispatch: the on-commit enqueue (job_enqueue, timed here) until the worker's started_at;
- provisioning: POST until the job succeeded (it ends once libvirt reports the domain
  running) and libvirt confirms "running" here, the image being replicated beforehand;
- round trip: POST until, after the DELETE, the job succeeded and the domain, its disk and
  the row are gone.

Beside each cycle the same guest is made and removed straight through the virt layer
("libvirt only": no API, database, queue or worker), so what the panel adds to libvirt's own
time shows.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .common import percentile, ratio, report

BENCH_DIR = Path(tempfile.gettempdir()) / f"cloudpanel-bench-{os.getpid()}"
OWN_DATABASE_URL = f"sqlite:///{BENCH_DIR / 'bench.sqlite3'}"
OWN_REDIS_URL = "redis://127.0.0.1:6379/14"
_MARK = "CLOUDPANEL_BENCH_DATABASE_URL"  # what isolate_environment() chose

ROUNDS = int(os.environ.get("BENCH_INSTANCE_ROUNDS", "12"))  # measured, per host type
WARMUP_ROUNDS = 1
JOB_TIMEOUT = 120.0
WORKER_START_TIMEOUT = 30.0

GOALS_MS = {  # figure: p50 goal in milliseconds
    "accept": 50.0,
    "dispatch": 20.0,
    "provision_kvm": 2000.0,
    # What the panel adds to libvirt's own time (p50 panel - p50 libvirt only, same run).
    "added_provision": 100.0,
    "added_delete": 200.0,
}
RALLY = (
    "OpenStack Rally NovaServers.boot_and_delete_server (m1.tiny, CirrOS), baseline of the "
    "OpenStack performance-docs reliability report: median 8.6 s, p95 11 s\n"
    "  (full control plane on several nodes, concurrency 4: for scale only, not like for like; "
    "https://docs.openstack.org/developer/performance-docs/test_results/reliability/fuel_ccp/"
    "reports/nova/boot_and_delete_with_reboot_one_node_with_rabbitmq_service/index.html)"
)


def isolate_environment() -> None:
    """Point the database, Redis and the image store at the bench's own; a no-op once
    Django's settings are loaded (run() then refuses to start)."""
    from django.conf import settings

    if settings.configured:
        return
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL") or OWN_DATABASE_URL
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL") or OWN_REDIS_URL
    os.environ["IMAGE_STORE"] = str(BENCH_DIR / "image-store")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ[_MARK] = os.environ["DATABASE_URL"]
    # Django's settings create the image store's directories as they load, whichever bench runs.
    atexit.register(shutil.rmtree, BENCH_DIR, ignore_errors=True)


class BenchError(RuntimeError):
    pass


def _isolation_problem() -> str | None:
    from django.conf import settings

    chosen = os.environ.get(_MARK)
    if not chosen or os.environ.get("DATABASE_URL") != chosen:
        return "bench.bench_instances was imported after Django read its settings"
    if chosen == OWN_DATABASE_URL:
        name = Path(str(settings.DATABASES["default"]["NAME"]))
        if name != BENCH_DIR / "bench.sqlite3":
            return f"Django uses database {name}, not the bench's own"
    redis_url = os.environ["REDIS_URL"]
    if redis_url != settings.REDIS_URL:
        return f"Django uses Redis {settings.REDIS_URL}, not {redis_url}"
    return None


def _lab_problem() -> str | None:
    for tool in ("libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img", "unshare"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "the libvirt lab needs root (mount namespaces)"
    return None


# --------------------------------------------------------------------------- the worker


class Worker:
    """A real Celery worker process on the bench's database and Redis, in its own session."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.name = f"bench-{os.getpid()}-{time.monotonic_ns()}@localhost"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from django.conf import settings

        from cloudpanel.celery import app

        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cloudpanel.settings"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from bench.bench_instances import probed_worker; "
                 "probed_worker()", "-A", "cloudpanel", "worker", "--pool",
                 "prefork", "--concurrency", "1", "--loglevel", "WARNING", "-n", self.name,
                 "--without-mingle", "--without-gossip"],
                env=env, cwd=settings.BASE_DIR, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while time.monotonic() < deadline:
            if any(self.name in reply for reply in (app.control.ping(timeout=0.5) or [])):
                return
            if self.proc.poll() is not None:
                raise BenchError(f"the celery worker exited:\n{self.log_tail()}")
        raise BenchError(f"the celery worker did not answer in {WORKER_START_TIMEOUT:g} s")

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the worker and its children
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no worker log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty worker log)"


PROBE_KEY = "cloudpanel:bench:libvirt-seconds:{}"


def probed_worker() -> None:
    """The Celery worker, measuring how long each job spends inside libvirt calls (the
    pool's call(): the RPCs and what runs around them) and leaving it in Redis by job id.
    Only a clock around the calls: nothing the job does changes. The job's wall time minus
    that is the panel's own time, a figure libvirt's run-to-run variance does not blur."""
    import threading

    import django

    django.setup()
    import redis
    from celery.__main__ import main
    from django.conf import settings

    from cloudpanel.jobs import services
    from cloudpanel.virt import pool

    spent = threading.local()
    original_call, original_execute = pool.ConnectionPool.call, services.job_execute

    def call(self, uri, fn):
        started = time.perf_counter()
        try:
            return original_call(self, uri, fn)
        finally:
            spent.seconds = getattr(spent, "seconds", 0.0) + time.perf_counter() - started
            spent.calls = getattr(spent, "calls", 0) + 1

    def job_execute(job_id, **kwargs):
        spent.seconds, spent.calls = 0.0, 0
        try:
            return original_execute(job_id, **kwargs)
        finally:
            client = redis.Redis.from_url(settings.REDIS_URL)
            client.set(PROBE_KEY.format(job_id), f"{spent.seconds} {spent.calls}", ex=3600)

    pool.ConnectionPool.call, services.job_execute = call, job_execute
    sys.argv = ["celery", *sys.argv[1:]]
    main()


def _libvirt_time(job_id: int) -> tuple[float, int]:
    """(seconds, calls) the worker spent in libvirt for the job; it writes them just after
    the job ends."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.perf_counter() + 5.0
    while True:
        value = client.get(PROBE_KEY.format(job_id))
        if value is not None:
            seconds, calls = value.split()
            return float(seconds), int(calls)
        if time.perf_counter() > deadline:
            raise BenchError(f"the worker left no libvirt time for job {job_id}")
        time.sleep(0.005)


# --------------------------------------------------------------------------- one cycle


def _timestamp(value: datetime) -> float:
    return value.timestamp()


def _expect(response, status: int, what: str) -> dict:
    if response.status_code != status:
        raise BenchError(f"{what}: HTTP {response.status_code} {response.content[:500]!r}")
    return response.json()


def _wait_job(job_id: int, what: str):
    """Wait for the job to end, woken by its own broadcast (the job.<id> group, as a page
    would be): no polling that would take CPU from the worker and QEMU while they work.
    The row is read after joining the group, so an end before that is not missed, and again
    every FALLBACK_READ in case a broadcast is lost. Returns it, raises unless it succeeded."""
    from asgiref.sync import async_to_sync

    from cloudpanel.jobs.models import Job

    async_to_sync(_await_job)(job_id, what)
    job = Job.objects.get(pk=job_id)
    if job.status != Job.Status.SUCCEEDED:
        raise BenchError(f"{what}: job {job_id} {job.status}: {job.error}\n{job.log}")
    return job


FALLBACK_READ = 0.5


async def _await_job(job_id: int, what: str) -> None:
    import asyncio

    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from cloudpanel.jobs.models import Job

    def status() -> str | None:
        return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()

    read = sync_to_async(status)  # thread-sensitive: the caller's thread and connection
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = f"job.{job_id}"
    await layer.group_add(group, channel)
    try:
        deadline = time.perf_counter() + JOB_TIMEOUT
        current = await read()
        while current not in Job.FINISHED:
            if current is None:
                raise BenchError(f"{what}: job {job_id} vanished")
            if time.perf_counter() > deadline:
                raise BenchError(f"{what}: job {job_id} still {current} after {JOB_TIMEOUT:g} s")
            try:
                message = await asyncio.wait_for(layer.receive(channel), FALLBACK_READ)
                current = message["job"]["status"]
            except TimeoutError:
                current = await read()
    finally:
        await layer.group_discard(group, channel)


class Bench:
    def __init__(self, client, image, flavor, replicas: dict, enqueued: dict[int, float]):
        self.client = client
        self.image = image
        self.flavor = flavor
        self.replicas = replicas  # host pk -> the image's ImageReplica there
        self.enqueued = enqueued
        # host pk -> how long the panel's guests ran between their create job's end and their
        # delete job's start. libvirt-only guests idle as long: in trials libvirt's destroy
        # was often quicker on a guest destroyed the instant it started.
        self.idle: dict[int, list[float]] = {}

    def cycle(self, host, name: str) -> dict[str, float]:
        """Create on `host` through the API until running, then delete until gone."""
        from cloudpanel.virt import domains, storage
        from hosts.connection import connection_uri
        from instances.models import Instance

        uri = connection_uri(host)
        body = {"name": name, "image": self.image.pk, "flavor": self.flavor.pk, "host": host.pk}
        t0 = time.perf_counter()
        response = self.client.post("/api/v1/instances/", body, format="json")
        t_accepted = time.perf_counter()
        data = _expect(response, 202, f"POST /api/v1/instances/ ({name})")
        job = _wait_job(data["id"], f"create {name}")
        instance = Instance.objects.get(pk=data["instance"])
        state = domains.domain_state(uri, instance.domain_name)
        t_running = time.perf_counter()
        if state != "running" or instance.state != Instance.State.RUNNING:
            raise BenchError(f"{name}: libvirt says {state}, the panel {instance.state}")
        xml = ET.fromstring(domains.domain_xml_desc(uri, instance.domain_name))
        if xml.get("type") != host.domain_type:
            raise BenchError(f"{name} runs as {xml.get('type')}, not {host.domain_type}")
        disk = instance.volumes.first().name

        t1 = time.perf_counter()
        response = self.client.delete(f"/api/v1/instances/{instance.pk}/")
        t_delete_accepted = time.perf_counter()
        data = _expect(response, 202, f"DELETE /api/v1/instances/{instance.pk}/")
        delete_job = _wait_job(data["id"], f"delete {name}")
        row = Instance.objects.filter(pk=instance.pk).exists()
        domain = domains.domain_exists(uri, instance.domain_name)
        volume = storage.find_volume_by_name(uri, "default", disk)
        t_gone = time.perf_counter()
        if row or domain or volume is not None:
            raise BenchError(
                f"{name} not gone after delete: row={row} domain={domain} disk={volume}"
            )

        (up_virt, up_calls), (down_virt, down_calls) = (
            _libvirt_time(job.id),
            _libvirt_time(delete_job.id),
        )
        started, d_started = _timestamp(job.started_at), _timestamp(delete_job.started_at)
        self.idle.setdefault(host.pk, []).append(d_started - _timestamp(job.finished_at))
        return {
            "accept_create": t_accepted - t0,
            "accept_delete": t_delete_accepted - t1,
            "dispatch_create": started - self.enqueued[job.id],
            "dispatch_delete": d_started - self.enqueued[delete_job.id],
            "queued_create": started - _timestamp(job.created_at),
            "provision": t_running - t0,
            "provision_job": _timestamp(job.finished_at) - started,
            "delete": t_gone - t1,
            "delete_job": _timestamp(delete_job.finished_at) - d_started,
            "round_trip": t_gone - t0,
            # Everything but the worker's libvirt calls, from the request to the check here.
            "own_provision": (t_running - t0) - up_virt,
            "own_delete": (t_gone - t1) - down_virt,
            "virt_calls_create": up_calls,
            "virt_calls_delete": down_calls,
        }

    def libvirt_cycle(self, host, name: str) -> dict[str, float]:
        """The same guest (overlay disk, domain XML, start; then destroy, undefine, delete the
        disk) straight through the virt layer, in this process: no API, database, queue or
        worker; the guest idles between the two as the panel's does. What is left of the
        panel's times once this is taken off is the panel's."""
        import uuid

        from cloudpanel.virt import domain_xml, domains, storage
        from hosts.connection import connection_uri
        from hosts.selectors import GIB

        uri = connection_uri(host)
        guest = uuid.uuid4()
        domain, disk = f"raw-{guest}", f"raw-{guest}-disk0.qcow2"
        capacity = max(self.flavor.disk_gib * GIB, self.image.virtual_size or 0)
        mac = "52:54:00:" + ":".join(f"{b:02x}" for b in guest.bytes[:3])
        t0 = time.perf_counter()
        replica = self.replicas[host.pk]
        vol = storage.create_overlay_volume(uri, "default", disk, replica.path, "qcow2", capacity)
        network = "default" if domains.network_active(uri, "default") else None
        spec = domain_xml.DomainSpec(
            name=domain,
            uuid=str(guest),
            vcpus=self.flavor.vcpus,
            memory_mib=self.flavor.ram_mib,
            domain_type=host.domain_type,
            arch=(host.capabilities or {}).get("arch") or "x86_64",
            disks=[domain_xml.DiskSpec(path=vol.path, format="qcow2")],
            nics=[domain_xml.NicSpec(mac=mac, network=network)],
            vnc_listen=host.console_address or "127.0.0.1",
            title=name,
            metadata={"instance": "0", "project": "bench"},
        )
        domains.define_domain(uri, domain_xml.build_domain(spec))
        domains.start_domain(uri, domain)
        state = domains.domain_state(uri, domain)
        t_running = time.perf_counter()
        if state != "running":
            raise BenchError(f"{domain}: libvirt says {state}")
        idle = self.idle.get(host.pk)
        time.sleep(max(percentile(idle, 50), 0.0) if idle else 0.0)  # not timed

        t1 = time.perf_counter()
        domains.undefine_domain(uri, domain)
        storage.delete_volume(uri, "default", disk)
        left = domains.domain_exists(uri, domain) or storage.find_volume_by_name(
            uri, "default", disk
        )
        t_gone = time.perf_counter()
        if left:
            raise BenchError(f"{domain} or its disk is still there after the delete")
        up, down = t_running - t0, t_gone - t1
        # without the idling; 5 libvirt calls up (disk, network, define, start, state) and
        # 4 down (undefine, delete the disk, the two checks)
        return {"provision": up, "delete": down, "round_trip": up + down}


# --------------------------------------------------------------------------- setup


def _prepare_database() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def _fixtures(lab, workdir: Path):
    """Admin with a token, the tiny flavor, the 64 MiB qcow2 image, the two lab hosts."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from hosts.models import Host
    from hosts.services import host_create
    from images.intake import image_upload
    from instances.services import flavor_create

    admin = get_user_model().objects.create_user(
        "bench-admin", password=None, is_staff=True, is_superuser=True
    )
    client = APIClient(HTTP_HOST="127.0.0.1")  # a name in ALLOWED_HOSTS, not "testserver"
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin).key}")
    flavor = flavor_create(name="bench-tiny", vcpus=1, ram_mib=64, disk_gib=1)
    qcow2 = workdir / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "64M"], check=True)
    with qcow2.open("rb") as fh:
        image = image_upload(name="bench-tiny", disk_format="qcow2", user=admin, fileobj=fh)
    hosts = [
        host_create(name=f"lab{h.index}", uri=h.uri_tcp) for h in lab.hosts
    ]  # fmt: skip
    for host in hosts:
        if host.status != Host.Status.ONLINE:
            raise BenchError(f"host {host.name} is {host.status}: {host.last_error}")
    return client, flavor, image, hosts


def _load() -> str:
    """Other work on the machine skews every figure here: say how busy it was."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _label(host) -> str:
    return "KVM" if host.kvm else "TCG"


# --------------------------------------------------------------------------- report


def _goal(label: str, values: list[float], goal_ms: float) -> str:
    p50 = percentile(values, 50) * 1000
    verdict = "met" if p50 < goal_ms else "MISSED"
    shown = f"{p50:.1f} ms" if goal_ms < 1000 else f"{p50 / 1000:.2f} s"
    limit = f"{goal_ms:g} ms" if goal_ms < 1000 else f"{goal_ms / 1000:g} s"
    return f"  {label:<44} p50 {shown:>10}  goal < {limit:<7} {verdict}"


def _added(label: str, added_ms: float, goal_ms: float) -> str:
    verdict = "met" if added_ms < goal_ms else "MISSED"
    return f"  {label:<44} {added_ms:+8.0f} ms   goal < {goal_ms:g} ms {verdict}"


def _report(panel: dict[str, list[dict]], raw: dict[str, list[dict]], labels: list[str]) -> None:
    everyone = [c for label in labels for c in panel[label]]

    def col(key: str, cycles: list[dict[str, float]]) -> list[float]:
        return [c[key] for c in cycles]

    def p50(key: str, cycles: list[dict[str, float]]) -> float:
        return percentile(col(key, cycles), 50)

    n = len(panel[labels[0]])
    report(
        f"1. API accept, in-process APIClient + token ({n} per host type, both hosts)",
        {
            "POST /api/v1/instances/ -> 202": col("accept_create", everyone),
            "DELETE /api/v1/instances/{id}/ -> 202": col("accept_delete", everyone),
        },
    )
    report(
        "2. job dispatch, real Celery worker (prefork, concurrency 1)",
        {
            "instance.create: on-commit enqueue -> started": col("dispatch_create", everyone),
            "instance.delete: on-commit enqueue -> started": col("dispatch_delete", everyone),
            "instance.create: row created_at -> started": col("queued_create", everyone),
        },
    )
    provision, trips = {}, {}
    for label in labels:
        provision[f"{label} panel: POST -> running"] = col("provision", panel[label])
        provision[f"{label} panel job: started -> finished"] = col("provision_job", panel[label])
        provision[f"{label} libvirt only: disk+define+start"] = col("provision", raw[label])
        trips[f"{label} panel: create -> running -> gone"] = col("round_trip", panel[label])
        trips[f"{label} libvirt only: create -> running -> gone"] = col("round_trip", raw[label])
        trips[f"{label} panel: DELETE -> gone (libvirt + DB)"] = col("delete", panel[label])
        trips[f"{label} panel delete job: started -> finished"] = col("delete_job", panel[label])
        trips[f"{label} libvirt only: destroy+undefine+rm disk"] = col("delete", raw[label])
    kvm, tcg = labels
    report("3. provisioning wall time (image already on the host)", provision, unit="s")
    ratio(provision, f"{tcg} panel: POST -> running", f"{kvm} panel: POST -> running")
    print(
        "  (libvirt reports 'running' once QEMU has started the vCPUs: the guest has no OS and\n"
        "  guest execution, where TCG is slower than KVM, is not on this path)"
    )
    report("4. create-then-delete round trips (API create -> running -> API delete -> gone)",
           trips, unit="s")  # fmt: skip
    ratio(
        trips, f"{tcg} panel: create -> running -> gone", f"{kvm} panel: create -> running -> gone"
    )
    print("\npanel overhead over libvirt alone, p50 difference (libvirt-only guests idle as "
          "long as the panel's between create and delete jobs):")  # fmt: skip
    added: dict[str, tuple[float, float]] = {}
    for label in labels:
        extra_up = (p50("provision", panel[label]) - p50("provision", raw[label])) * 1000
        extra_down = (p50("delete", panel[label]) - p50("delete", raw[label])) * 1000
        added[label] = (extra_up, extra_down)
        spread = col("delete", raw[label])
        print(
            f"  {label}: panel adds {extra_up:+.0f} ms to provisioning, {extra_down:+.0f} ms to "
            f"delete (libvirt's own delete ranged {min(spread):.2f}-{max(spread):.2f} s: its "
            "destroy waits for QEMU to exit in 200 ms polls; read the delete difference "
            "against that)"
        )

    print("\nthe panel's own time, per cycle: the wall time from the request to the check here "
          "minus the\nworker's time inside libvirt calls for that job (measured by the bench's "
          "worker; libvirt's variance drops out):")  # fmt: skip
    for label in labels:
        cycles = panel[label]
        print(
            f"  {label}: provisioning p50 {p50('own_provision', cycles) * 1000:.0f} ms "
            f"(p95 {percentile(col('own_provision', cycles), 95) * 1000:.0f}), delete p50 "
            f"{p50('own_delete', cycles) * 1000:.0f} ms "
            f"(p95 {percentile(col('own_delete', cycles), 95) * 1000:.0f}); libvirt calls per "
            f"create job {p50('virt_calls_create', cycles):.0f} (libvirt only: 5), per delete "
            f"job {p50('virt_calls_delete', cycles):.0f} (libvirt only: 2 + its 2 checks)"
        )

    print("\ngoals (p50):")
    print(_goal("API accept (POST create)", col("accept_create", everyone), GOALS_MS["accept"]))
    print(_goal("job dispatch (create)", col("dispatch_create", everyone), GOALS_MS["dispatch"]))
    print(_goal("job dispatch (delete)", col("dispatch_delete", everyone), GOALS_MS["dispatch"]))
    print(_goal(f"provisioning on {kvm}", col("provision", panel[kvm]),
                GOALS_MS["provision_kvm"]))  # fmt: skip
    for label in labels:
        up, down = added[label]
        print(_added(f"panel adds to provisioning ({label})", up, GOALS_MS["added_provision"]))
        print(_added(f"panel adds to delete ({label})", down, GOALS_MS["added_delete"]))
    for label in labels:
        own_up = p50("own_provision", panel[label]) * 1000
        own_down = p50("own_delete", panel[label]) * 1000
        print(_added(f"panel's own time, provisioning ({label})", own_up,
                     GOALS_MS["added_provision"]))  # fmt: skip
        print(_added(f"panel's own time, delete ({label})", own_down, GOALS_MS["added_delete"]))
    print(f"\nfor scale: {RALLY}")
    here = {label: p50("round_trip", panel[label]) for label in labels}
    print(f"  here, boot-and-delete p50: {kvm} {here[kvm]:.2f} s, {tcg} {here[tcg]:.2f} s "
          "(one at a time, one host each)")  # fmt: skip


# --------------------------------------------------------------------------- run


def run() -> None:
    title = "instances on the libvirt lab (API accept, dispatch, provisioning, delete)"
    problem = _isolation_problem() or _lab_problem()
    if problem:
        print(f"\n== {title}: skipped ({problem})")
        return

    from django.conf import settings
    from django.db import connections

    from cloudpanel import virt
    from cloudpanel.celery import app
    from cloudpanel.jobs import services as job_services
    from images.replicas import image_ensure_replica
    from lab import Lab, ensure_kvm_device

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    print(f"\n== {title}")
    print(f"database {os.environ['DATABASE_URL']}, redis {os.environ['REDIS_URL']}, "
          f"DEBUG={settings.DEBUG}; {os.cpu_count()} CPUs, {platform.platform()}; "
          f"{_load()}")  # fmt: skip
    began = time.perf_counter()
    _prepare_database()
    app.control.purge()  # messages left in the bench queue by an interrupted run

    enqueued: dict[int, float] = {}
    original_enqueue: Callable = job_services.job_enqueue

    def timed_enqueue(job) -> None:
        enqueued[job.id] = time.time()
        original_enqueue(job)

    lab = Lab()
    worker = Worker(BENCH_DIR / "worker.log")
    try:
        ensure_kvm_device()
        lab.start(n_hosts=2, kvm=[True, False], base_dir=BENCH_DIR / "lab")
        client, flavor, image, hosts = _fixtures(lab, BENCH_DIR)
        labels = [_label(h) for h in hosts]
        if labels != ["KVM", "TCG"]:
            raise BenchError(f"expected a KVM and a TCG host, the lab has {labels}")
        # Pre-mirror: provisioning then finds the image on the host.
        replicas = {host.pk: image_ensure_replica(image=image, host=host) for host in hosts}
        worker.start()
        job_services.job_enqueue = timed_enqueue
        print(f"lab, image replicas and worker ready in {time.perf_counter() - began:.1f} s; "
              f"{WARMUP_ROUNDS} warm-up + {ROUNDS} measured rounds per host type")  # fmt: skip

        bench = Bench(client, image, flavor, replicas, enqueued)
        panel: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
        raw: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
        warm: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
        for round_no in range(WARMUP_ROUNDS + ROUNDS):
            # Alternate which host, and which of panel / libvirt only, goes first.
            order = hosts if round_no % 2 == 0 else hosts[::-1]
            for host in order:
                label, name = _label(host), f"bench-{_label(host).lower()}-{round_no}"
                cases = [(panel, bench.cycle), (raw, bench.libvirt_cycle)]
                for into, cycle in cases if round_no % 2 == 0 else cases[::-1]:
                    sample = cycle(host, name)
                    if round_no >= WARMUP_ROUNDS:
                        into[label].append(sample)
                    elif into is panel:
                        warm[label].append(sample)
        for label in labels:
            first = warm[label][0]
            print(
                f"warm-up on {label} (not counted): accept {first['accept_create'] * 1000:.1f}"
                f" ms, dispatch {first['dispatch_create'] * 1000:.1f} ms, provisioning "
                f"{first['provision']:.2f} s, round trip {first['round_trip']:.2f} s"
            )
        _report(panel, raw, labels)
        print(f"\nbench time {time.perf_counter() - began:.0f} s; {_load()}")
    except BaseException:
        print(f"\nworker log ({worker.log_path}):\n{worker.log_tail()}", file=sys.stderr)
        raise
    finally:
        job_services.job_enqueue = original_enqueue
        worker.stop()
        with contextlib.suppress(Exception):
            virt.get_pool().close()
        lab.stop()
        connections.close_all()
        shutil.rmtree(BENCH_DIR, ignore_errors=True)  # named after this process: ours
