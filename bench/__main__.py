"""`make bench`: every benchmark, each comparing its cases side by side in one run."""

from __future__ import annotations

import argparse
import os
import sys

import django

from . import bench_instances  # noqa: F401  first: points DATABASE_URL/REDIS_URL at the bench's own


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("only", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudpanel.settings")
    django.setup()

    from . import bench_pool

    benches = {
        "pool": lambda: bench_pool.run(["qemu:///system", "test:///default"]),
    }
    try:
        from . import bench_instances

        benches["instances"] = bench_instances.run
    except ImportError:
        pass
    for name, fn in benches.items():
        if not args.only or name in args.only:
            fn()
    return 0


if __name__ == "__main__":
    sys.exit(main())
