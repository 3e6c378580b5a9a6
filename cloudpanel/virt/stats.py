"""Domain statistics in one bulk call per host, and the rates two samples of them give.

`domain_counters(uri)` asks libvirt once (getAllDomainStats) for every active domain's
state, CPU time, vCPU count, balloon, block and interface counters, with NOWAIT: a domain
busy in another job (a migration, a long block job) answers with what libvirt has without
waiting for that job, so one domain can never stall the sweep of a host. What it returns
are raw, monotonically growing counters; `rates(previous, current)` (pure) turns two of them
into the figures a sample carries, and `host_totals(...)` (pure) sums a host's samples.

Units of a sample (keys as cloudpanel.live.metrics names them):
- cpu_percent: the share of the domain's own vCPUs it used, 0-100: CPU time (vCPUs and
  QEMU's own threads, so a busy guest may read slightly over 100) over wall time x vCPUs.
  The host total is the share of the host's CPUs all its instances used, 0-100.
- memory_used_bytes / memory_total_bytes: what the guest reports through its balloon driver
  (available - unused, of available) when it does; else the QEMU process's resident memory
  (capped at the current balloon size) of the current balloon size.
- disk_read_bps, disk_write_bps, net_rx_bps, net_tx_bps: bytes per second over all of the
  domain's disks (interfaces) since the previous sample. A counter that went down (the
  domain was restarted in between) gives 0, never a negative rate.

libvirt's test:///default driver accepts the NOWAIT and ACTIVE flags but reports only the
state group (no CPU, balloon, block or interface counters): its rates are all 0 and its
memory 0. Real hosts (QEMU) report every group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import libvirt

from .hosts import DOMAIN_STATES
from .pool import get_pool

STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU  # for vcpu.current: cpu_percent is per vCPU
    | libvirt.VIR_DOMAIN_STATS_BLOCK
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
)
# Only running (or paused) domains: a shut-off domain has no counters to rate.
FLAGS = (
    libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
    | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
)

SAMPLE_KEYS = (
    "cpu_percent",
    "memory_used_bytes",
    "memory_total_bytes",
    "disk_read_bps",
    "disk_write_bps",
    "net_rx_bps",
    "net_tx_bps",
)
KIB = 1024


@dataclass(frozen=True)
class DomainCounters:
    """One domain's raw counters at one moment (None where libvirt reported nothing)."""

    name: str
    uuid: str
    state: str  # DOMAIN_STATES' words
    t: float  # time.time() of the sample (unix seconds)
    monotonic: float  # time.monotonic() of the same moment, for intervals
    cpu_time_ns: int | None
    vcpus: int | None
    balloon_current_bytes: int | None
    balloon_maximum_bytes: int | None
    balloon_available_bytes: int | None  # what the guest sees (needs its balloon driver)
    balloon_unused_bytes: int | None
    rss_bytes: int | None
    disk_read_bytes: int
    disk_write_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int


def _kib(stats: dict, key: str) -> int | None:
    value = stats.get(key)
    return None if value is None else int(value) * KIB


def _sum_indexed(stats: dict, group: str, field: str) -> int:
    """Sum of stats[f"{group}.{i}.{field}"] over i < stats[f"{group}.count"]."""
    count = int(stats.get(f"{group}.count", 0) or 0)
    return sum(int(stats.get(f"{group}.{i}.{field}", 0) or 0) for i in range(count))


def counters_from_stats(name: str, uuid: str, stats: dict, t: float, mono: float) -> DomainCounters:
    """One entry of getAllDomainStats as DomainCounters (pure)."""
    cpu = stats.get("cpu.time")
    vcpus = stats.get("vcpu.current")
    return DomainCounters(
        name=name,
        uuid=uuid,
        state=DOMAIN_STATES.get(int(stats.get("state.state", 0)), "nostate"),
        t=t,
        monotonic=mono,
        cpu_time_ns=None if cpu is None else int(cpu),
        vcpus=None if vcpus is None else int(vcpus),
        balloon_current_bytes=_kib(stats, "balloon.current"),
        balloon_maximum_bytes=_kib(stats, "balloon.maximum"),
        balloon_available_bytes=_kib(stats, "balloon.available"),
        balloon_unused_bytes=_kib(stats, "balloon.unused"),
        rss_bytes=_kib(stats, "balloon.rss"),
        disk_read_bytes=_sum_indexed(stats, "block", "rd.bytes"),
        disk_write_bytes=_sum_indexed(stats, "block", "wr.bytes"),
        net_rx_bytes=_sum_indexed(stats, "net", "rx.bytes"),
        net_tx_bytes=_sum_indexed(stats, "net", "tx.bytes"),
    )


def domain_counters(uri: str) -> list[DomainCounters]:
    """Every active domain's counters on the host, in one getAllDomainStats call."""

    def fetch(conn: libvirt.virConnect) -> list[DomainCounters]:
        entries = conn.getAllDomainStats(STATS, FLAGS)
        t, mono = time.time(), time.monotonic()
        return [
            counters_from_stats(dom.name(), dom.UUIDString(), stats, t, mono)
            for dom, stats in entries
        ]

    return get_pool().call(uri, fetch)


def memory(counters: DomainCounters) -> tuple[int, int]:
    """(used, total) bytes: the guest's own view when it reports one, else QEMU's."""
    available, unused = counters.balloon_available_bytes, counters.balloon_unused_bytes
    if available and unused is not None:
        return max(available - unused, 0), available
    total = counters.balloon_current_bytes or counters.balloon_maximum_bytes or 0
    used = counters.rss_bytes if counters.rss_bytes is not None else total
    return (min(used, total) if total else used), total


def _rate(previous: int, current: int, seconds: float) -> float:
    delta = current - previous
    return delta / seconds if delta > 0 else 0.0


def rates(previous: DomainCounters, current: DomainCounters) -> dict:
    """The sample (cloudpanel.live.metrics keys, "t" included) between two counters of the
    same domain (pure). The interval is the monotonic time between them; none (or a
    clock going back) gives rates of 0."""
    seconds = current.monotonic - previous.monotonic
    used, total = memory(current)
    sample = {"t": round(current.t, 3), "memory_used_bytes": used, "memory_total_bytes": total}
    if seconds <= 0:
        return {**sample, **dict.fromkeys(("cpu_percent", *SAMPLE_KEYS[3:]), 0.0)}
    cpu = 0.0
    if current.cpu_time_ns is not None and previous.cpu_time_ns is not None:
        cpu_seconds = _rate(previous.cpu_time_ns, current.cpu_time_ns, seconds) / 1e9
        cpu = 100.0 * cpu_seconds / max(current.vcpus or 1, 1)
    sample.update(
        cpu_percent=round(cpu, 2),
        disk_read_bps=round(_rate(previous.disk_read_bytes, current.disk_read_bytes, seconds), 1),
        disk_write_bps=round(
            _rate(previous.disk_write_bytes, current.disk_write_bytes, seconds), 1
        ),
        net_rx_bps=round(_rate(previous.net_rx_bytes, current.net_rx_bytes, seconds), 1),
        net_tx_bps=round(_rate(previous.net_tx_bytes, current.net_tx_bytes, seconds), 1),
    )
    return sample


def host_totals(
    samples: list[dict], counters: list[DomainCounters], *, host_cpus: int, t: float
) -> dict:
    """The host's sample over its instances' samples (pure): bytes and byte rates summed,
    cpu_percent as the share of the host's `host_cpus` CPUs (each instance's per-vCPU
    percent weighted by its vCPUs), and "instances", how many were running."""
    totals = {key: 0.0 for key in SAMPLE_KEYS}
    cpu_vcpu_percent = 0.0
    for sample, counter in zip(samples, counters, strict=True):
        for key in SAMPLE_KEYS[1:]:
            totals[key] += sample.get(key, 0) or 0
        cpu_vcpu_percent += (sample.get("cpu_percent", 0) or 0) * max(counter.vcpus or 1, 1)
    totals["cpu_percent"] = round(cpu_vcpu_percent / max(host_cpus, 1), 2)
    totals["memory_used_bytes"] = int(totals["memory_used_bytes"])
    totals["memory_total_bytes"] = int(totals["memory_total_bytes"])
    for key in SAMPLE_KEYS[3:]:
        totals[key] = round(totals[key], 1)
    return {"t": round(t, 3), **totals, "instances": len(samples)}


__all__ = [
    "FLAGS",
    "SAMPLE_KEYS",
    "STATS",
    "DomainCounters",
    "counters_from_stats",
    "domain_counters",
    "host_totals",
    "memory",
    "rates",
]
