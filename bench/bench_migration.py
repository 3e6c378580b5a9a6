"""Live migration: the panel's job against bare libvirt, on a lab of two TCG hosts.

One 128 MiB OS-less guest per storage kind (a 1 GiB sparse qcow2 root disk in pool
`default`, private per host: its disk is copied; or in pool `shared`, one directory both
hosts see: only memory moves) goes back and forth between the hosts. Each round moves it
once through the panel (LIVE_MIGRATE started and run in this process: the checks, the
shared-storage probe, the stats loop, the database switch and the source's cleanup) and
once through bare libvirt-python (migrateToURI3 with the same flags and parameters), the
order alternating. Reported: wall time and libvirt's downtime (completed job stats on the
target), p50 over the rounds, and the ratio panel / bare (goal <= 1.2x).

The bench has its own lab, database and Redis DB (bench_instances.isolate_environment) and
removes them when done.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time

from .bench_instances import BENCH_DIR, _isolation_problem, _lab_problem, _prepare_database
from .common import percentile

ROUNDS = 5
WARMUP = 1
GOAL = 1.2


def _fixtures(lab):
    from django.contrib.auth import get_user_model

    from hosts.services import host_create
    from images.intake import image_upload
    from instances.services import flavor_create

    admin = get_user_model().objects.create_user(
        "bench-admin", password=None, is_staff=True, is_superuser=True
    )
    flavor = flavor_create(name="bench-128", vcpus=1, ram_mib=128, disk_gib=1)
    qcow2 = BENCH_DIR / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "64M"], check=True)
    with qcow2.open("rb") as fh:
        image = image_upload(name="bench-tiny", disk_format="qcow2", user=admin, fileobj=fh)
    hosts = [host_create(name=f"mig{h.index}", uri=h.uri_tcp) for h in lab.hosts]
    return admin, flavor, image, hosts


def _create(admin, image, flavor, host, name, pool):
    from cloudpanel.jobs.services import job_execute
    from instances.models import Instance
    from instances.operations import CREATE

    host.default_pool = pool
    host.save(update_fields=["default_pool"])
    job = CREATE.start(user=admin, name=name, image=image, flavor=flavor, host=host)
    job_execute(job.id)
    job.refresh_from_db()
    if job.status != "succeeded":
        raise RuntimeError(f"create failed: {job.error}")
    return Instance.objects.get(pk=job.target_id)


def _panel(admin, instance, target) -> tuple[float, float]:
    from cloudpanel.jobs.services import job_execute
    from instances.operations.migrate import LIVE_MIGRATE

    instance.refresh_from_db()
    began = time.perf_counter()
    job = LIVE_MIGRATE.start(user=admin, target=instance, host=target)
    job_execute(job.id)
    wall = time.perf_counter() - began
    job.refresh_from_db()
    if job.status != "succeeded":
        raise RuntimeError(f"panel migration failed: {job.error}")
    return wall, float(job.result["downtime_ms"] or 0)


def _bare(instance, source, target, shared: bool) -> tuple[float, float]:
    """The same move with libvirt-python alone; the panel's rows are then brought up to
    date outside the timing (so the next panel move starts from the truth)."""
    from cloudpanel.virt import migration, storage
    from hosts.connection import connection_uri
    from instances.models import Instance, Volume

    instance.refresh_from_db()
    src, dst = connection_uri(source), connection_uri(target)
    request = migration.MigrationRequest(
        name=instance.domain_name,
        target_uri=dst,
        migrate_host="127.0.0.1",
        copy_disks=() if shared else ("vda",),
        shared_storage_unsafe=shared,
    )
    began = time.perf_counter()
    migration.migrate(src, request)
    wall = time.perf_counter() - began
    stats = migration.completed_stats(dst, instance.domain_name)
    volumes = list(instance.volumes.all())
    for volume in volumes:
        if not shared:
            storage.delete_volume(src, volume.pool, volume.name)  # undefinesource leaves it
        storage.pool_refresh(dst, volume.pool)
    Volume.objects.filter(instance=instance).update(host=target)
    Instance.objects.filter(pk=instance.pk).update(host=target)
    return wall, float(stats.downtime_ms or 0) if stats else 0.0


def run() -> None:
    title = "live migration, panel job vs bare libvirt (128 MiB TCG guest, 2 lab hosts)"
    problem = _isolation_problem() or _lab_problem()
    if problem:
        print(f"\n== {title}: skipped ({problem})")
        return
    from django.db import connections

    from cloudpanel import virt
    from cloudpanel.jobs import services as job_services
    from lab import Lab

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    print(f"\n== {title}")
    began = time.perf_counter()
    _prepare_database()
    original_enqueue = job_services.job_enqueue
    job_services.job_enqueue = lambda job: None  # run in process, nothing queued
    lab = Lab()
    try:
        lab.start(n_hosts=2, kvm=[False, False], base_dir=BENCH_DIR / "lab-migration")
        admin, flavor, image, hosts = _fixtures(lab)
        guests = {
            "non-shared": _create(admin, image, flavor, hosts[0], "bench-private", "default"),
            "shared": _create(admin, image, flavor, hosts[0], "bench-shared", "shared"),
        }
        print(f"lab and guests ready in {time.perf_counter() - began:.1f} s; {WARMUP} warm-up "
              f"+ {ROUNDS} measured rounds")  # fmt: skip
        samples: dict[str, dict[str, list[tuple[float, float]]]] = {
            kind: {"panel": [], "bare": []} for kind in guests
        }
        at = {kind: 0 for kind in guests}  # index of the host each guest is on
        for round_no in range(WARMUP + ROUNDS):
            for kind, instance in guests.items():
                order = ["panel", "bare"] if round_no % 2 == 0 else ["bare", "panel"]
                for case in order:
                    source, target = hosts[at[kind]], hosts[1 - at[kind]]
                    if case == "panel":
                        sample = _panel(admin, instance, target)
                    else:
                        sample = _bare(instance, source, target, kind == "shared")
                    at[kind] = 1 - at[kind]
                    if round_no >= WARMUP:
                        samples[kind][case].append(sample)
        print(f"{'storage':<12} {'case':<8} {'n':>3} {'wall p50':>10} {'wall p95':>10} "
              f"{'downtime p50':>13}")  # fmt: skip
        for kind, cases in samples.items():
            for case, values in cases.items():
                walls = [w for w, _ in values]
                downs = [d for _, d in values]
                p50, p95, down = percentile(walls, 50), percentile(walls, 95), percentile(downs, 50)
                print(f"{kind:<12} {case:<8} {len(values):>3} {p50:>9.2f}s {p95:>9.2f}s "
                      f"{down:>11.0f}ms")  # fmt: skip
            ratio = percentile([w for w, _ in cases["panel"]], 50) / percentile(
                [w for w, _ in cases["bare"]], 50
            )
            verdict = "ok" if ratio <= GOAL else "OVER"
            print(
                f"{kind:<12} ratio p50 wall panel/bare: {ratio:.2f}x (goal <= {GOAL}x: {verdict})"
            )
        print(f"bench time {time.perf_counter() - began:.0f} s")
    finally:
        job_services.job_enqueue = original_enqueue
        with contextlib.suppress(Exception):
            virt.get_pool().close()
        lab.stop()
        connections.close_all()
        shutil.rmtree(BENCH_DIR, ignore_errors=True)
