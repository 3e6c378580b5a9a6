"""`make bench`: every benchmark, each comparing its cases side by side in one run."""

from __future__ import annotations

import argparse
import os
import sys

import django

from . import (
    bench_api,
    bench_console,
    bench_events,
    bench_guest,
    bench_instances,
    bench_load,
    bench_migration,
    bench_pool,
    bench_stats,
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("only", nargs="*", help="benchmarks to run (default: all but guest)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudpanel.settings")
    # Before Django reads its settings: the bench's own database, Redis DB and image store.
    bench_instances.isolate_environment()
    django.setup()

    benches = {
        "pool": lambda: bench_pool.run(["qemu:///system", "test:///default"]),
        "instances": bench_instances.run,
        "load": bench_load.run,
        "stats": bench_stats.run,
        "events": bench_events.run,
        "console": bench_console.run,
        "migration": bench_migration.run,
        "api": bench_api.run,
        "guest": bench_guest.run,  # a real OS under TCG, ~10 min: only when named
    }
    default = [name for name in benches if name != "guest"]
    for name, fn in benches.items():
        if name in (args.only or default):
            fn()
    return 0


if __name__ == "__main__":
    sys.exit(main())
