"""Rates from raw counters (pure), and the bulk call itself on test:///default."""

from __future__ import annotations

import dataclasses

import pytest

from cloudpanel.virt import stats

GIB = 1024**3

# One entry of getAllDomainStats as QEMU reports it (libvirt 9.0, shape as observed).
QEMU_STATS = {
    "state.state": 1,
    "state.reason": 1,
    "cpu.time": 615_584_000,
    "cpu.user": 345_227_000,
    "cpu.system": 270_357_000,
    "balloon.current": 65536,
    "balloon.maximum": 65536,
    "balloon.rss": 42172,
    "vcpu.current": 2,
    "vcpu.maximum": 2,
    "block.count": 2,
    "block.0.name": "vda",
    "block.0.rd.bytes": 1000,
    "block.0.wr.bytes": 200,
    "block.1.name": "sda",
    "block.1.rd.bytes": 24,
    "net.count": 1,
    "net.0.name": "vnet0",
    "net.0.rx.bytes": 5000,
    "net.0.tx.bytes": 700,
}


def counters(t: float = 100.0, **changes) -> stats.DomainCounters:
    base = stats.counters_from_stats("vm", "u-1", QEMU_STATS, t=1_700_000_000 + t, mono=t)
    return dataclasses.replace(base, **changes)


def test_counters_from_qemu_stats():
    c = counters()
    assert c.state == "running" and c.vcpus == 2 and c.cpu_time_ns == 615_584_000
    assert c.balloon_current_bytes == 64 * 1024 * 1024
    assert c.rss_bytes == 42172 * 1024
    assert (c.disk_read_bytes, c.disk_write_bytes) == (1024, 200)  # summed over both disks
    assert (c.net_rx_bytes, c.net_tx_bytes) == (5000, 700)
    assert c.balloon_available_bytes is None  # the guest has no balloon driver running


def test_rates_between_two_samples():
    before = counters(100.0)
    after = counters(
        102.0,
        cpu_time_ns=before.cpu_time_ns + 2_000_000_000,  # 2 s of CPU in 2 s on 2 vCPUs
        disk_read_bytes=before.disk_read_bytes + 4096,
        disk_write_bytes=before.disk_write_bytes + 1000,
        net_rx_bytes=before.net_rx_bytes + 300,
        net_tx_bytes=before.net_tx_bytes + 100,
    )
    sample = stats.rates(before, after)
    assert set(sample) == {"t", *stats.SAMPLE_KEYS}
    assert sample["cpu_percent"] == 50.0
    assert sample["disk_read_bps"] == 2048.0 and sample["disk_write_bps"] == 500.0
    assert sample["net_rx_bps"] == 150.0 and sample["net_tx_bps"] == 50.0
    assert sample["t"] == round(after.t, 3)
    # No guest figures: QEMU's resident memory of the current balloon.
    assert sample["memory_used_bytes"] == 42172 * 1024
    assert sample["memory_total_bytes"] == 64 * 1024 * 1024


def test_memory_prefers_the_guests_own_view():
    c = counters(balloon_available_bytes=2 * GIB, balloon_unused_bytes=GIB // 2)
    assert stats.memory(c) == (GIB + GIB // 2, 2 * GIB)
    # RSS above the balloon (QEMU's own overhead) is capped at what the guest has.
    c = counters(rss_bytes=100 * 1024 * 1024)
    assert stats.memory(c) == (64 * 1024 * 1024, 64 * 1024 * 1024)


def test_counters_that_went_down_give_zero_not_negative():
    before = counters(100.0)
    after = counters(105.0, cpu_time_ns=10, disk_read_bytes=0, net_tx_bytes=1)  # restarted
    sample = stats.rates(before, after)
    assert sample["cpu_percent"] == 0.0
    assert sample["disk_read_bps"] == 0.0 and sample["net_tx_bps"] == 0.0


def test_no_interval_gives_zero_rates():
    sample = stats.rates(counters(100.0), counters(100.0, cpu_time_ns=10**12))
    assert all(sample[k] == 0.0 for k in stats.SAMPLE_KEYS if not k.startswith("memory"))


def test_missing_cpu_counters_give_zero():
    sample = stats.rates(counters(1.0, cpu_time_ns=None), counters(2.0))
    assert sample["cpu_percent"] == 0.0


def test_host_totals_sum_and_weight_cpu_by_vcpus():
    one = counters(vcpus=1)
    four = counters(vcpus=4)
    samples = [
        {"cpu_percent": 100.0, "memory_used_bytes": 10, "memory_total_bytes": 20,
         "disk_read_bps": 1.0, "disk_write_bps": 2.0, "net_rx_bps": 3.0, "net_tx_bps": 4.0},
        {"cpu_percent": 50.0, "memory_used_bytes": 5, "memory_total_bytes": 40,
         "disk_read_bps": 1.0, "disk_write_bps": 0.0, "net_rx_bps": 0.0, "net_tx_bps": 1.0},
    ]  # fmt: skip
    totals = stats.host_totals(samples, [one, four], host_cpus=6, t=123.4567)
    # 1 full vCPU + 2 of 4 vCPUs = 3 of the host's 6 CPUs.
    assert totals["cpu_percent"] == 50.0
    assert totals["memory_used_bytes"] == 15 and totals["memory_total_bytes"] == 60
    assert totals["disk_read_bps"] == 2.0 and totals["net_tx_bps"] == 5.0
    assert totals["instances"] == 2 and totals["t"] == 123.457
    empty = stats.host_totals([], [], host_cpus=4, t=1.0)
    assert empty["instances"] == 0 and empty["cpu_percent"] == 0.0


def test_bulk_call_on_the_test_driver():
    """test:///default accepts NOWAIT|ACTIVE and reports the state group only."""
    import libvirt

    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(
            "<domain type='test'><name>wx-stats-off</name><memory unit='MiB'>64</memory>"
            "<os><type arch='x86_64'>hvm</type></os></domain>"
        )
        first = stats.domain_counters("test:///default")
        second = stats.domain_counters("test:///default")
    finally:
        dom.undefine()
        conn.close()
    names = {c.name for c in first}
    assert "test" in names  # the driver's running domain
    assert "wx-stats-off" not in names  # ACTIVE: shut-off domains are not asked
    assert all(c.state == "running" for c in first)
    by_name = {c.name: c for c in second}
    sample = stats.rates(first[0], by_name[first[0].name])
    assert set(sample) == {"t", *stats.SAMPLE_KEYS}
    assert sample["cpu_percent"] == 0.0 and sample["memory_total_bytes"] == 0


@pytest.mark.parametrize("flag", ["NOWAIT", "ACTIVE"])
def test_flags_are_the_ones_asked_for(flag):
    import libvirt

    assert stats.FLAGS & getattr(libvirt, f"VIR_CONNECT_GET_ALL_DOMAINS_STATS_{flag}")
