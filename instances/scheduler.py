"""Choose the host for a new (or resized) instance: filter by health and capacity, rank."""

from __future__ import annotations

from dataclasses import dataclass

from hosts.models import Host
from hosts.selectors import GIB, MIB, host_capacity, host_list_with_allocation

from .models import Flavor


class NoValidHost(Exception):
    """No host can take the instance; the message says why, for a person."""


@dataclass(frozen=True)
class Need:
    vcpus: int
    ram_bytes: int
    disk_bytes: int

    @classmethod
    def of(cls, flavor: Flavor) -> Need:
        return cls(flavor.vcpus, flavor.ram_mib * MIB, flavor.disk_gib * GIB)


def has_pool(host: Host, pool: str) -> bool:
    return any(p.get("name") == pool and p.get("active") for p in host.storage_pools or [])


def why_not(host: Host, need: Need) -> str | None:
    """None when the host can take `need` (in its default pool), else the reason it cannot."""
    pool = host.default_pool
    if not host.enabled:
        return f"host {host.name} is disabled"
    if host.maintenance:
        return f"host {host.name} is in maintenance"
    if host.status != Host.Status.ONLINE:
        return f"host {host.name} is {host.status}"
    if not has_pool(host, pool):
        return f"host {host.name} has no active storage pool '{pool}'"
    cap = host_capacity(host)
    for label, res, wanted, unit in (
        ("vCPUs", cap.vcpus, need.vcpus, 1),
        ("RAM", cap.ram, need.ram_bytes, MIB),
        ("disk", cap.disk, need.disk_bytes, GIB),
    ):
        if res.free < wanted:
            suffix = {1: "", MIB: " MiB", GIB: " GiB"}[unit]
            return (
                f"host {host.name} has {res.free / unit:.0f}{suffix} {label} free under its "
                f"overcommit ratio, {wanted / unit:.0f}{suffix} needed"
            )
    return None


def select_host(flavor: Flavor, *, pinned: Host | None = None) -> Host:
    """The host to place `flavor` on: the pinned one if it fits, else the one with most free RAM."""
    need = Need.of(flavor)
    if pinned is not None:
        host = host_list_with_allocation().get(pk=pinned.pk)
        reason = why_not(host, need)
        if reason:
            raise NoValidHost(f"Cannot place the instance on the chosen host: {reason}.")
        return host
    candidates = []
    reasons = []
    for host in host_list_with_allocation().order_by("name"):
        reason = why_not(host, need)
        if reason:
            reasons.append(reason)
            continue
        cap = host_capacity(host)
        candidates.append((-cap.ram.free, -cap.vcpus.free, host.name, host))
    if not candidates:
        detail = "; ".join(reasons) if reasons else "no hosts are registered"
        raise NoValidHost(f"No host has room for flavor {flavor.name}: {detail}.")
    candidates.sort(key=lambda c: c[:3])
    return candidates[0][3]


def check_resize(host: Host, old: Flavor, new: Flavor) -> None:
    """Raise NoValidHost when the host cannot hold the growth from `old` to `new`."""
    need = Need(
        max(new.vcpus - old.vcpus, 0),
        max(new.ram_mib - old.ram_mib, 0) * MIB,
        max(new.disk_gib - old.disk_gib, 0) * GIB,
    )
    host = host_list_with_allocation().get(pk=host.pk)
    cap = host_capacity(host)
    for label, res, wanted in (
        ("vCPUs", cap.vcpus, need.vcpus),
        ("RAM", cap.ram, need.ram_bytes),
        ("disk", cap.disk, need.disk_bytes),
    ):
        if res.free < wanted:
            raise NoValidHost(f"Host {host.name} has not enough {label} free for flavor {new}.")
