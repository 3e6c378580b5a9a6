"""Reads about hosts: capacity under overcommit, for pages, the API and the scheduler."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db.models import Count, Q, Sum

from .models import Host

GIB = 1024**3
MIB = 1024**2

# Instances in these states hold no resources on their host.
NOT_HOLDING = ["missing", "error"]


@dataclass(frozen=True)
class Resource:
    physical: float  # cores, bytes of RAM, bytes of disk
    ratio: float
    allocated: float

    @property
    def limit(self) -> float:
        return self.physical * self.ratio

    @property
    def free(self) -> float:
        return max(self.limit - self.allocated, 0)

    @property
    def percent(self) -> float:
        return round(100 * self.allocated / self.limit, 1) if self.limit else 0.0

    @property
    def overcommitted(self) -> bool:
        return self.allocated > self.physical

    def as_dict(self) -> dict:
        return {**asdict(self), "limit": self.limit, "free": self.free, "percent": self.percent}


@dataclass(frozen=True)
class Capacity:
    vcpus: Resource
    ram: Resource
    disk: Resource
    instances: int

    def as_dict(self) -> dict:
        return {
            "vcpus": self.vcpus.as_dict(),
            "ram_bytes": self.ram.as_dict(),
            "disk_bytes": self.disk.as_dict(),
            "instances": self.instances,
        }


def host_list_with_allocation():
    """Hosts annotated with what their instances take, in one query."""
    holding = ~Q(instances__state__in=NOT_HOLDING) & Q(instances__isnull=False)
    return Host.objects.annotate(
        alloc_vcpus=Sum("instances__flavor__vcpus", filter=holding),
        alloc_ram_mib=Sum("instances__flavor__ram_mib", filter=holding),
        alloc_disk_gib=Sum("instances__flavor__disk_gib", filter=holding),
        instance_count=Count("instances", filter=holding),
    )


def host_pool_capacity_bytes(host: Host) -> int:
    """The space of the pool new disks go to (the host's default pool). Not a sum over
    pools: pools often share one filesystem (a shared pool, an ISO pool beside the images),
    and each would count the same free space again."""
    return next(
        (
            p.get("capacity_bytes", 0)
            for p in host.storage_pools or []
            if p.get("name") == host.default_pool and p.get("active")
        ),
        0,
    )


def host_capacity(host: Host) -> Capacity:
    if not hasattr(host, "alloc_vcpus"):
        host = host_list_with_allocation().get(pk=host.pk)
    caps = host.capabilities or {}
    return Capacity(
        vcpus=Resource(
            float(caps.get("cpus", 0)), float(host.cpu_allocation_ratio), host.alloc_vcpus or 0
        ),
        ram=Resource(
            float(caps.get("memory_bytes", 0)),
            float(host.ram_allocation_ratio),
            (host.alloc_ram_mib or 0) * MIB,
        ),
        disk=Resource(
            float(host_pool_capacity_bytes(host)),
            float(host.disk_allocation_ratio),
            (host.alloc_disk_gib or 0) * GIB,
        ),
        instances=host.instance_count or 0,
    )


def host_totals(hosts) -> dict:
    """Sum of capacities over hosts, for the overview page."""
    totals = {"vcpus": [0.0, 0.0, 0.0], "ram_bytes": [0.0, 0.0, 0.0], "disk_bytes": [0.0] * 3}
    for host in hosts:
        cap = host_capacity(host)
        for key, res in (("vcpus", cap.vcpus), ("ram_bytes", cap.ram), ("disk_bytes", cap.disk)):
            totals[key][0] += res.physical
            totals[key][1] += res.limit
            totals[key][2] += res.allocated
    return {
        key: {
            "physical": p,
            "limit": lim,
            "allocated": a,
            "percent": round(100 * a / lim, 1) if lim else 0.0,
        }
        for key, (p, lim, a) in totals.items()
    }
