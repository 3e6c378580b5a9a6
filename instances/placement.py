"""Where an instance may move: the checks a migration target passes (live or cold), and the
choice of one when the caller names none. Reasons name hosts and pools: for admins."""

from __future__ import annotations

from cloudpanel import virt
from cloudpanel.errors import Conflict
from cloudpanel.virt import domains, migration, storage
from hosts.connection import connection_uri
from hosts.models import Host
from hosts.selectors import GIB, MIB, host_capacity, host_list_with_allocation

from . import scheduler
from .models import DiskMirror, Instance, Volume

# The volumes that move with an instance (mirrors and backups have their own lives).
MOVING_ROLES = (Volume.Role.ROOT, Volume.Role.DATA, Volume.Role.CDROM)


def moving_volumes(instance: Instance) -> list[Volume]:
    return list(instance.volumes.filter(role__in=MOVING_ROLES).order_by("id"))


def mirror_problem(instance: Instance) -> str | None:
    if DiskMirror.objects.filter(instance=instance, state__in=DiskMirror.ACTIVE).exists():
        return "its disk is being mirrored: stop or pivot the mirror first"
    return None


def _host_problem(target: Host) -> str | None:
    if not target.enabled:
        return "it is disabled"
    if target.maintenance:
        return "it is in maintenance"
    if target.status != Host.Status.ONLINE:
        return f"it is {target.status}"
    return None


def _room_problem(instance: Instance, target: Host) -> str | None:
    need = scheduler.Need.of(instance.flavor)
    cap = host_capacity(target)
    for label, res, wanted, unit, suffix in (
        ("vCPUs", cap.vcpus, need.vcpus, 1, ""),
        ("RAM", cap.ram, need.ram_bytes, MIB, " MiB"),
        ("disk", cap.disk, need.disk_bytes, GIB, " GiB"),
    ):
        if res.free < wanted:
            return (
                f"it has {res.free / unit:.0f}{suffix} {label} free under its overcommit "
                f"ratio, {wanted / unit:.0f}{suffix} needed"
            )
    return None


def _instance_networks(instance: Instance, src_uri: str) -> list[str]:
    try:
        details = domains.domain_details(src_uri, instance.domain_name)
    except virt.NotFound:
        return []
    return sorted({n for n in details.networks if n})


def _pool_problem(instance: Instance, src_uri: str, dst_uri: str) -> str | None:
    for pool in sorted({v.pool for v in moving_volumes(instance)}):
        try:
            path = storage.pool_path(src_uri, pool)
        except virt.NotFound:
            path = None
        if migration.pool_by_name_or_path(dst_uri, pool, path) is None:
            where = f" (or one at {path})" if path else ""
            return f"it has no active storage pool '{pool}'{where} for the instance's disks"
    return None


def compatibility_problem(instance: Instance, target: Host, *, live: bool) -> str | None:
    """None when `instance` can move to `target` now (live: while it runs), else why not,
    as the end of a sentence ("... host X: <reason>")."""
    if instance.host_id is None:
        return "the instance has no host"
    if target.pk == instance.host_id:
        return "it is the instance's own host"
    problem = _host_problem(target) or mirror_problem(instance) or _room_problem(instance, target)
    if problem:
        return problem
    try:
        src_uri = connection_uri(instance.host)
        dst_uri = connection_uri(target)
        for network in _instance_networks(instance, src_uri):
            if not domains.network_active(dst_uri, network):
                return f"its network '{network}' is missing or inactive"
        problem = _pool_problem(instance, src_uri, dst_uri)
        if problem:
            return problem
        needs = migration.domain_needs(src_uri, instance.domain_name)
        if not live:
            # A defined-only domain carries no resolved CPU model to compare.
            needs = migration.DomainNeeds(
                needs.domain_type, needs.arch, needs.machine, None, needs.disks
            )
        return migration.compatibility(dst_uri, needs, kvm_usable=target.kvm)
    except virt.VirtError as exc:
        return f"it could not be checked: {exc}"


def migration_target(*, instance: Instance, host: Host | None = None, live: bool) -> Host:
    """The host `instance` moves to: `host` once checked, or the compatible one with the most
    free RAM. Raises Conflict with the reason(s) when there is none."""
    if host is not None:
        target = host_list_with_allocation().get(pk=host.pk)
        problem = compatibility_problem(instance, target, live=live)
        if problem:
            raise Conflict(
                f"Instance {instance.name} cannot move to host {target.name}: {problem}."
            )
        return target
    problem = mirror_problem(instance)
    if problem:
        raise Conflict(f"Instance {instance.name} cannot move: {problem}.")
    candidates = []
    for target in host_list_with_allocation().exclude(pk=instance.host_id).order_by("name"):
        if _host_problem(target) or _room_problem(instance, target):
            candidates.append((1, 0, target.name, target))
            continue
        cap = host_capacity(target)
        candidates.append((0, -cap.ram.free, target.name, target))
    candidates.sort(key=lambda c: c[:3])
    reasons = []
    for _, _, _, target in candidates:
        problem = compatibility_problem(instance, target, live=live)
        if problem is None:
            return target
        reasons.append(f"host {target.name}: {problem}")
    detail = "; ".join(reasons) if reasons else "there is no other host"
    raise Conflict(f"No host can take instance {instance.name}: {detail}.")


def compatible_hosts(instance: Instance, *, live: bool) -> list[tuple[Host, str | None]]:
    """Every other host with its problem (None: compatible), for the page's choice."""
    return [
        (target, compatibility_problem(instance, target, live=live))
        for target in host_list_with_allocation().exclude(pk=instance.host_id).order_by("name")
    ]
