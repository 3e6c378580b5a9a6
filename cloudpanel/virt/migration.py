"""Live migration, peer to peer: the source's libvirtd talks to the target's itself.

`migrate()` blocks until libvirt is done (run it in a thread); meanwhile `job_stats()` reads
the job's progress and `abort()` stops it, both on the source. Before a migration,
`compatibility()` asks the target's libvirt whether it can run the domain (domain type,
machine type, CPU), and `storage_shared()` decides whether a pool is shared storage by
planting a marker volume on one side and looking for it on the other.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass

import libvirt

from . import xmlutil
from .errors import NotFound, VirtError
from .pool import get_pool, translate

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MARKER_PREFIX = "cloudpanel-shared-probe-"


@dataclass(frozen=True)
class MigrationStats:
    """One reading of a migration job (libvirt's domain job stats), bytes and ms."""

    active: bool  # a job runs now (False: none, or these are a completed job's)
    data_processed: int = 0
    data_remaining: int = 0
    data_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    memory_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    disk_total: int = 0
    dirty_rate: int = 0  # pages/s
    page_size: int = 4096
    iteration: int = 0
    time_elapsed_ms: int = 0
    downtime_ms: int | None = None
    postcopy: bool = False

    @property
    def percent(self) -> float:
        if not self.data_total:
            return 0.0
        return min(100.0, 100.0 * self.data_processed / self.data_total)

    def as_dict(self) -> dict:
        return {
            "data_processed": self.data_processed,
            "data_remaining": self.data_remaining,
            "data_total": self.data_total,
            "memory_processed": self.memory_processed,
            "memory_remaining": self.memory_remaining,
            "memory_total": self.memory_total,
            "disk_processed": self.disk_processed,
            "disk_remaining": self.disk_remaining,
            "disk_total": self.disk_total,
            "dirty_rate_pages": self.dirty_rate,
            "dirty_rate_bytes": self.dirty_rate * self.page_size,
            "iteration": self.iteration,
            "time_elapsed_ms": self.time_elapsed_ms,
            "downtime_ms": self.downtime_ms,
            "postcopy": self.postcopy,
        }


def _stats(raw: dict, active: bool) -> MigrationStats:
    def get(key: str, default: int = 0) -> int:
        value = raw.get(key)
        return int(value) if value is not None else default

    downtime = raw.get("downtime")
    return MigrationStats(
        active=active,
        data_processed=get("data_processed"),
        data_remaining=get("data_remaining"),
        data_total=get("data_total"),
        memory_processed=get("memory_processed"),
        memory_remaining=get("memory_remaining"),
        memory_total=get("memory_total"),
        disk_processed=get("disk_processed"),
        disk_remaining=get("disk_remaining"),
        disk_total=get("disk_total"),
        dirty_rate=get("memory_dirty_rate"),
        page_size=get("memory_page_size", 4096) or 4096,
        iteration=get("memory_iteration"),
        time_elapsed_ms=get("time_elapsed"),
        downtime_ms=int(downtime) if downtime is not None else None,
        postcopy=bool(raw.get("memory_postcopy_requests")),
    )


@dataclass(frozen=True)
class MigrationRequest:
    """What to migrate where, and how."""

    name: str
    target_uri: str  # the URI the SOURCE's libvirtd opens to reach the target's
    migrate_host: str  # address the target's QEMU listens on for the migration stream
    copy_disks: tuple[str, ...] = ()  # disk targets (vda...) to copy: non-shared storage
    shared_storage_unsafe: bool = False  # disks on storage verified shared (see storage_shared)
    auto_converge: bool = False
    post_copy: bool = False
    bandwidth_mib: int | None = None
    persist: bool = True

    def flags(self) -> int:
        flags = (
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        )
        if self.persist:
            flags |= libvirt.VIR_MIGRATE_PERSIST_DEST
        if self.copy_disks:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        if self.shared_storage_unsafe:
            # libvirt trusts only cluster filesystems it knows as shared; the probe has
            # shown this storage is the same on both hosts.
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        if self.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if self.post_copy:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        return flags

    def params(self) -> dict:
        host = self.migrate_host
        uri_host = f"[{host}]" if ":" in host else host
        params: dict = {
            libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{uri_host}",
            libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: host,
        }
        if self.copy_disks:
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(self.copy_disks)
        if self.bandwidth_mib:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(self.bandwidth_mib)
        return params


def migrate(uri: str, request: MigrationRequest) -> None:
    """Run the migration of `request.name` from the host at `uri`; blocks until libvirt is
    done. Raises VirtError with libvirt's message when it fails or is aborted."""

    def op(conn: libvirt.virConnect) -> None:
        dom = conn.lookupByName(request.name)
        dom.migrateToURI3(request.target_uri, request.params(), request.flags())

    # No retry: a migration must never run twice because a connection hiccuped.
    conn = get_pool().get(uri)
    try:
        op(conn)
    except libvirt.libvirtError as exc:
        raise translate(exc, uri) from exc


def job_stats(uri: str, name: str) -> MigrationStats:
    """The running job's stats on the source (active False when none runs)."""

    def op(conn: libvirt.virConnect) -> MigrationStats:
        raw = conn.lookupByName(name).jobStats(0)
        kind = raw.get("type", libvirt.VIR_DOMAIN_JOB_NONE)
        return _stats(
            raw, kind in (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED)
        )

    return get_pool().call(uri, op)


def completed_stats(uri: str, name: str) -> MigrationStats | None:
    """The stats libvirt kept of the domain's last completed job (on the target after an
    incoming migration: downtime, bytes, time), or None."""

    def op(conn: libvirt.virConnect) -> MigrationStats | None:
        raw = conn.lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        if not raw or raw.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return _stats(raw, False)

    try:
        return get_pool().call(uri, op)
    except VirtError as exc:
        log.info("completed job stats of %s not read: %s", name, exc)
        return None


def abort(uri: str, name: str) -> bool:
    """Abort the domain's running job; False when none was running."""

    def op(conn: libvirt.virConnect) -> bool:
        dom = conn.lookupByName(name)
        try:
            dom.abortJob()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                return False  # no job (it just ended)
            raise
        return True

    try:
        return get_pool().call(uri, op)
    except NotFound:
        return False


def start_post_copy(uri: str, name: str) -> None:
    """Switch a running migration (started with post_copy) to post-copy."""
    get_pool().call(uri, lambda conn: conn.lookupByName(name).migrateStartPostCopy(0))


# ---- compatibility


@dataclass(frozen=True)
class DomainNeeds:
    """What a domain needs of a host, read from its XML."""

    domain_type: str
    arch: str
    machine: str
    cpu_xml: str | None  # the <cpu> element, when the domain has one with a model
    disks: tuple[tuple[str, str, bool], ...]  # (target, path, readonly)


def domain_needs(uri: str, name: str) -> DomainNeeds:
    def op(conn: libvirt.virConnect) -> DomainNeeds:
        return parse_needs(conn.lookupByName(name).XMLDesc(0))

    return get_pool().call(uri, op)


def parse_needs(xml: str) -> DomainNeeds:
    root = xmlutil.parse(xml)
    os_type = root.find("os/type")
    cpu = root.find("cpu")
    cpu_xml = None
    if cpu is not None and cpu.find("model") is not None and cpu.get("mode") != "host-passthrough":
        cpu_xml = xmlutil.to_string(cpu)
    disks = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        path = (source.get("file") or source.get("dev") or "") if source is not None else ""
        disks.append(
            (
                target.get("dev", "") if target is not None else "",
                path,
                disk.find("readonly") is not None,
            )
        )
    return DomainNeeds(
        domain_type=root.get("type", "qemu"),
        arch=os_type.get("arch", "x86_64") if os_type is not None else "x86_64",
        machine=os_type.get("machine", "pc") if os_type is not None else "pc",
        cpu_xml=cpu_xml,
        disks=tuple(disks),
    )


def compatibility(uri: str, needs: DomainNeeds, *, kvm_usable: bool) -> str | None:
    """None when the host at `uri` can run a domain with `needs`, else why not. `kvm_usable`
    is the panel's own finding (libvirt offers kvm whenever /dev/kvm exists)."""
    if needs.domain_type == "kvm" and not kvm_usable:
        return "it cannot run KVM guests (TCG only), and the instance is a KVM guest"

    def op(conn: libvirt.virConnect) -> str | None:
        try:
            caps = conn.getDomainCapabilities(None, needs.arch, needs.machine, needs.domain_type, 0)
        except libvirt.libvirtError as exc:
            return (
                f"it cannot run {needs.arch} machine type {needs.machine} as "
                f"{needs.domain_type}: {exc.get_error_message()}"
            )
        machine = xmlutil.parse(caps).findtext("machine") or ""
        if not machine:
            return f"it does not offer machine type {needs.machine}"
        if needs.cpu_xml is None:
            return None
        try:
            result = conn.compareHypervisorCPU(
                None, needs.arch, machine, needs.domain_type, needs.cpu_xml, 0
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (
                libvirt.VIR_ERR_NO_SUPPORT,
                libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
            ):
                return None  # nothing to compare against (no CPU model probing on this driver)
            return f"its CPU check failed: {exc.get_error_message()}"
        if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
            model = xmlutil.parse(needs.cpu_xml).findtext("model") or "?"
            return f"its CPU cannot run the instance's CPU model {model}"
        return None

    return get_pool().call(uri, op)


# ---- storage


def pool_by_name_or_path(uri: str, name: str, path: str | None) -> str | None:
    """The name of the host's active pool named `name`, else of one whose target is `path`."""

    def op(conn: libvirt.virConnect) -> str | None:
        pools = conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        for pool in pools:
            if pool.name() == name:
                return name
        if path:
            for pool in pools:
                target = xmlutil.parse(pool.XMLDesc(0)).findtext("target/path")
                if target and target.rstrip("/") == path.rstrip("/"):
                    return pool.name()
        return None

    return get_pool().call(uri, op)


def storage_shared(src_uri: str, src_pool: str, dst_uri: str) -> bool:
    """Whether the target sees the source pool's storage: a marker volume is made in the
    source pool, the target's pool of the same name (or target path) refreshed and the
    marker looked up there by its path; the marker is removed again."""
    from . import storage

    path = storage.pool_path(src_uri, src_pool)
    dst_pool = pool_by_name_or_path(dst_uri, src_pool, path)
    if dst_pool is None:
        return False
    marker = f"{MARKER_PREFIX}{uuidlib.uuid4().hex}"
    info = storage.create_volume(src_uri, src_pool, marker, MIB, fmt="raw")
    try:
        storage.pool_refresh(dst_uri, dst_pool)

        def lookup(conn: libvirt.virConnect) -> bool:
            try:
                conn.storageVolLookupByPath(info.path)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                    return False
                raise
            return True

        return get_pool().call(dst_uri, lookup)
    finally:
        storage.delete_volume(src_uri, src_pool, marker)
        try:
            storage.pool_refresh(dst_uri, dst_pool)
        except VirtError:
            pass


def refresh_pools(uri: str, pools: Iterable[str]) -> None:
    from . import storage

    for pool in set(pools):
        try:
            storage.pool_refresh(uri, pool)
        except VirtError as exc:
            log.info("pool %s not refreshed on %s: %s", pool, uri, exc)


def domain_gone(uri: str, name: str) -> bool:
    """Whether the domain is no longer defined on the host (False when unsure)."""
    try:
        get_pool().call(uri, lambda conn: conn.lookupByName(name))
    except NotFound:
        return True
    except VirtError:
        return False
    return False
