"""Helpers for side-by-side benchmarks: interleaved rounds, percentiles, one table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Run every case once per round, alternating, so drift on a shared machine hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(timed(fn))
    return samples


def report(title: str, samples: dict[str, list[float]], unit: str = "ms") -> None:
    scale = 1000.0 if unit == "ms" else 1.0
    print(f"\n== {title}")
    print(f"{'case':<44} {'n':>4} {'p50':>10} {'p95':>10} {'mean':>10}")
    for name, values in samples.items():
        print(
            f"{name:<44} {len(values):>4} {percentile(values, 50) * scale:>9.3f}{unit[0]}"
            f" {percentile(values, 95) * scale:>9.3f}{unit[0]} "
            f"{statistics.fmean(values) * scale:>9.3f}{unit[0]}"
        )


def ratio(samples: dict[str, list[float]], slow: str, fast: str) -> float:
    value = percentile(samples[slow], 50) / percentile(samples[fast], 50)
    print(f"ratio p50 {slow!r} / {fast!r}: {value:.1f}x")
    return value
