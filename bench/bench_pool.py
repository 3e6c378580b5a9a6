"""listAllDomains through the connection pool vs opening a connection per call (issue 2)."""

from __future__ import annotations

from cloudpanel.virt.pool import ConnectionPool

from .common import interleave, percentile, ratio, report

CALLS_PER_SAMPLE = 20


def run(uris: list[str]) -> None:
    import libvirt  # the benchmark measures libvirt itself, beside the pool

    for uri in uris:
        pool = ConnectionPool(connect_timeout=10)
        try:
            pool.get(uri)
        except Exception as exc:
            print(f"\n== pool vs per-call connection on {uri}: skipped ({exc})")
            continue

        def pooled(pool=pool, uri=uri):
            for _ in range(CALLS_PER_SAMPLE):
                pool.call(uri, lambda conn: conn.listAllDomains())

        def per_call(uri=uri):
            for _ in range(CALLS_PER_SAMPLE):
                conn = libvirt.open(uri)
                conn.listAllDomains()
                conn.close()

        samples = interleave({"pooled connection": pooled, "open per call": per_call}, 30)
        report(f"listAllDomains x{CALLS_PER_SAMPLE} on {uri}", samples)
        value = ratio(samples, "open per call", "pooled connection")
        per_sec_pool = CALLS_PER_SAMPLE / percentile(samples["pooled connection"], 50)
        per_sec_open = CALLS_PER_SAMPLE / percentile(samples["open per call"], 50)
        print(
            f"calls/s: pooled {per_sec_pool:,.0f}, open per call {per_sec_open:,.0f} "
            f"(pool is {value:.1f}x faster)"
        )
        pool.close()
