"""(c) Stats sweep: one host with 200 running domains, the watcher's sweep against the bare
bulk call (issue 9).

What runs: libvirt's test:///default driver in this process, with DOMAINS domains defined
and started, and a host row with DOMAINS instance rows (in the bench's own database, see
bench_instances.isolate_environment) naming them. Cases, interleaved over ROUNDS rounds:

- "watcher sweep": what the watcher does every WATCHER_STATS_INTERVAL per host
  (instances.watcher.sweep): getAllDomainStats with NOWAIT|ACTIVE, the counters as
  dataclasses, the instance rows read, the rates against the previous sweep, the host
  totals, both stored in Redis (cloudpanel.live.metrics.record_many) and the status.metrics
  messages published to the admin group and to each project's group (PROJECTS projects);
- "bare getAllDomainStats": the same libvirt call on a plain connection, nothing else.

The test driver reports only the state group (no CPU, balloon, block or interface
counters), so its bulk call is cheaper than a QEMU host's; everything the panel adds on top
(rates, Redis, publishing: each sample carries every figure whatever the driver) costs
what it would on a real host. Goal: a sweep under 1 s.
"""

from __future__ import annotations

from .common import interleave, percentile, ratio, report

DOMAINS = 200
ROUNDS = 20
PROJECTS = 10
GOAL_SECONDS = 1.0
PREFIX = "bench-stats-"


def _domain_xml(name: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    )


def run() -> None:
    title = f"stats sweep over {DOMAINS} domains on one host (test:///default)"
    from .bench_instances import _isolation_problem, _prepare_database

    problem = _isolation_problem()
    if problem:
        print(f"\n== {title}: skipped ({problem})")
        return
    import libvirt  # the bench measures libvirt's own call beside the panel's sweep

    from cloudpanel.live import metrics
    from cloudpanel.projects.models import Project
    from cloudpanel.virt import stats
    from hosts.models import Host
    from instances.models import Flavor, Instance
    from instances.watcher.sweep import Sweeper

    _prepare_database()
    conn = libvirt.open("test:///default")
    made = []
    try:
        for i in range(DOMAINS):
            dom = conn.defineXML(_domain_xml(f"{PREFIX}{i:03d}"))
            dom.create()
            made.append(dom)
        host = Host.objects.create(
            name="bench-stats", uri="test:///default", status=Host.Status.ONLINE,
            capabilities={"cpus": 32},
        )  # fmt: skip
        flavor = Flavor.objects.create(name="bench-stats", vcpus=1, ram_mib=64, disk_gib=1)
        projects = [Project.objects.create(name=f"bench-stats-{p}") for p in range(PROJECTS)]
        Instance.objects.bulk_create(
            Instance(
                name=f"{PREFIX}{i:03d}",
                project=projects[i % PROJECTS],
                flavor=flavor,
                host=host,
                domain_name=f"{PREFIX}{i:03d}",
                state=Instance.State.RUNNING,
            )  # fmt: skip
            for i in range(DOMAINS)
        )
        sweeper = Sweeper()
        sweeper.sweep(host, host.uri)  # primes the previous counters (and the connection)
        swept: list[int] = []

        def watcher_sweep() -> None:
            result = sweeper.sweep(host, host.uri)
            result.record_and_publish()
            swept.append(len(result.samples))

        def bare_call() -> None:
            conn.getAllDomainStats(stats.STATS, stats.FLAGS)

        samples = interleave(
            {"watcher sweep": watcher_sweep, "bare getAllDomainStats": bare_call}, ROUNDS
        )
        report(title, samples)
        ratio(samples, "watcher sweep", "bare getAllDomainStats")
        p95 = percentile(samples["watcher sweep"], 95)
        some = Instance.objects.filter(host=host).values_list("pk", flat=True).first()
        kept = len(metrics.recent(metrics.INSTANCE, some))
        print(
            f"instances per sweep: {min(swept)}-{max(swept)} of {DOMAINS}; samples kept per "
            f"instance: {kept} (capacity {metrics.capacity()}); sweep p95 {p95 * 1000:.0f} ms, "
            f"goal under {GOAL_SECONDS * 1000:.0f} ms: {'met' if p95 < GOAL_SECONDS else 'MISSED'}"
        )
    finally:
        for dom in made:
            try:
                dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass
        conn.close()
        for key in metrics.client().scan_iter("cloudpanel:metrics:*"):
            metrics.client().delete(key)  # the bench's Redis DB, not the panel's
