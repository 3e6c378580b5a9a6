"""Ports, bridges and the 'default' network of lab hosts (all on 127.0.0.1 and lab bridges)."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from .processes import LabError, daemon_env

DEFAULT_PORT_BASE = 16610  # clear of a system libvirtd's 16509
PORT_SEARCH_END = 17000  # auto-picked TCP ports stay below this (see LabHost.__post_init__)
NETWORK_MODES = ("auto", "nat", "isolated", "l2", "none")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As libvirtd binds: SO_REUSEADDR ignores TIME_WAIT left by a stopped daemon.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def bridge_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def tcp_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def bridge_name(tcp_port: int) -> str:
    # Interface names are global (no network namespaces here) and at most 15 characters.
    return f"cpl{tcp_port}"


def find_port_base(n_hosts: int, start: int = DEFAULT_PORT_BASE) -> int:
    """First block of n_hosts free TCP ports (with no leftover lab bridge) at or after start."""
    for base in range(start, PORT_SEARCH_END - n_hosts + 1, n_hosts):
        ports = range(base, base + n_hosts)
        if all(port_free(p) and not bridge_exists(bridge_name(p)) for p in ports):
            return base
    raise LabError(f"no {n_hosts} free ports between {start} and {PORT_SEARCH_END}")


def network_xml(mode: str, bridge: str, subnet: str) -> str:
    """The 'default' network in a NETWORK_MODES mode on bridge, with subnet "10.x.y.0/24"."""
    net = ET.Element("network")
    ET.SubElement(net, "name").text = "default"
    if mode == "nat":
        ET.SubElement(net, "forward", mode="nat")
    ET.SubElement(net, "bridge", name=bridge, stp="on", delay="0")
    if mode != "l2":
        prefix = subnet.rsplit(".", 1)[0]
        ip = ET.SubElement(net, "ip", address=f"{prefix}.1", netmask="255.255.255.0")
        dhcp = ET.SubElement(ip, "dhcp")
        ET.SubElement(dhcp, "range", start=f"{prefix}.2", end=f"{prefix}.254")
    return ET.tostring(net, encoding="unicode")


def remove_network_leftovers(bridge: str, subnet: str) -> None:
    """Delete the bridge and iptables rules a killed libvirtd left behind (only ones
    naming this host's unique bridge or subnet)."""
    env = daemon_env()
    if bridge_exists(bridge):
        subprocess.run(["ip", "link", "del", bridge], env=env, check=False)
    marks = {bridge, subnet}
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool, path=env["PATH"]):
            continue
        for table in ("filter", "nat", "mangle"):
            out = subprocess.run(
                [tool, "-w", "-t", table, "-S"],
                capture_output=True, text=True, env=env, check=False,
            ).stdout  # fmt: skip
            for rule in out.splitlines():
                args = shlex.split(rule)
                if args[:1] == ["-A"] and marks & set(args):
                    subprocess.run(
                        [tool, "-w", "-t", table, "-D", *args[1:]],
                        env=env, check=False, capture_output=True,
                    )  # fmt: skip
