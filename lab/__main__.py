"""CLI: ``python -m lab start|stop|status --help`` (as root; ``make lab`` / ``make lab-stop``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .host import LabHost
from .lab import STATE_FILE, Lab
from .network import DEFAULT_PORT_BASE, NETWORK_MODES
from .processes import LabError


def _describe(host: LabHost, status: bool = False) -> str:
    kvm = "offered, denied to guests" if host.kvm_denied else "yes" if host.kvm else "no"
    lines = [f"{host.name}: kvm={kvm}"]
    if status:
        pids = host.pids()
        up = "up" if pids["libvirtd"] else "DOWN"
        lines[0] += f" libvirtd={up} pids={pids}"
    lines += [
        f"  uri_tcp   {host.uri_tcp}",
        f"  uri_unix  {host.uri_unix}",
        f"  pool      {host.pool_path} (outside the namespace: {host.pool_dir})",
        f"  network   default: {host.network_mode or 'none'}"
        + (f" ({host.network_error})" if host.network_error else ""),
        f"  vnc ports {host.vnc_ports[0]}-{host.vnc_ports[1]}, "
        f"migration ports {host.migration_ports[0]}-{host.migration_ports[1]}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab", description="A lab of isolated libvirt hosts."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a lab and print its URIs")
    start.add_argument("--hosts", type=int, default=2, help="number of hosts (default 2)")
    start.add_argument(
        "--no-kvm-on", type=int, nargs="*", default=[1], metavar="IDX",
        help="hosts without KVM, TCG only (default: 1; give none to use KVM everywhere)",
    )  # fmt: skip
    start.add_argument(
        "--kvm-denied-on", type=int, nargs="*", default=[], metavar="IDX",
        help="hosts whose libvirt offers KVM while their guests may not open /dev/kvm",
    )  # fmt: skip
    start.add_argument("--port-base", type=int, help="TCP port of host0 (default: first free "
                       f"from {DEFAULT_PORT_BASE})")  # fmt: skip
    start.add_argument("--network", choices=NETWORK_MODES, default="auto")
    start.add_argument("--json", action="store_true", help="print the lab state as JSON")
    for name in ("stop", "status"):
        cmd = sub.add_parser(name, help=f"{name} the lab in --dir")
        if name == "status":
            cmd.add_argument("--json", action="store_true")
    for cmd in sub.choices.values():
        cmd.add_argument("--dir", default="var/lab", help="lab directory (default var/lab)")
    args = parser.parse_args(argv)
    base = Path(args.dir).absolute()

    try:
        if args.command == "start":
            if (base / STATE_FILE).exists():
                raise LabError(f"a lab is recorded in {base / STATE_FILE}: stop it first")
            kvm = [i not in args.no_kvm_on for i in range(args.hosts)]
            denied = [i in args.kvm_denied_on for i in range(args.hosts)]
            began = time.monotonic()
            lab = Lab(port_base=args.port_base, network=args.network).start(
                args.hosts, kvm, base, kvm_denied=denied
            )
            if args.json:
                print((base / STATE_FILE).read_text(), end="")
            else:
                print(f"lab started in {time.monotonic() - began:.1f}s, state in "
                      f"{base / STATE_FILE}")  # fmt: skip
                for host in lab.hosts:
                    print(_describe(host))
        elif args.command == "stop":
            if not (base / STATE_FILE).exists():
                print(f"no lab recorded in {base}")  # stop is idempotent
                return 0
            Lab.load(base).stop()
            print(f"lab in {base} stopped")
        else:
            lab = Lab.load(base)
            if args.json:
                hosts = [dict(h.to_dict(), pids=h.pids()) for h in lab.hosts]
                print(json.dumps({"base_dir": str(base), "hosts": hosts}, indent=2))
            else:
                for host in lab.hosts:
                    print(_describe(host, status=True))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
