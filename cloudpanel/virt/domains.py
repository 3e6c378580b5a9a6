"""Domain operations by host URI and domain name: define, power, snapshots, inspect, remove."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from . import agent, domain_xml
from .errors import NotFound, OperationInvalid, VirtError
from .hosts import DOMAIN_STATES
from .pool import get_pool

# Undefine everything libvirt keeps beside the definition, or undefine refuses.
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0)
)


@dataclass(frozen=True)
class DiskDetails:
    target: str
    device: str
    path: str
    format: str
    capacity_bytes: int
    pool: str | None
    volume: str | None


@dataclass(frozen=True)
class DomainDetails:
    name: str
    uuid: str
    state: str
    active: bool
    persistent: bool
    domain_type: str
    vcpus: int
    memory_mib: int
    disks: list[DiskDetails]
    macs: list[str]
    networks: list[str | None]
    vnc_port: int | None


@dataclass(frozen=True)
class SnapshotDetails:
    name: str
    description: str
    state: str
    created: int  # unix time
    current: bool


def _dom(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    return conn.lookupByName(name)


def _state(dom: libvirt.virDomain) -> str:
    return DOMAIN_STATES.get(dom.state()[0], "nostate")


def domain_exists(uri: str, name: str) -> bool:
    try:
        get_pool().call(uri, lambda conn: _dom(conn, name))
    except NotFound:
        return False
    return True


def define_domain(uri: str, xml: str) -> str:
    """Define (or redefine) a persistent domain; returns its name."""
    return get_pool().call(uri, lambda conn: conn.defineXML(xml).name())


def domain_state(uri: str, name: str) -> str:
    return get_pool().call(uri, lambda conn: _state(_dom(conn, name)))


def _power(uri: str, name: str, op) -> None:
    get_pool().call(uri, lambda conn: op(_dom(conn, name)))


def start_domain(uri: str, name: str) -> None:
    _power(uri, name, lambda dom: dom.create())


def shutdown_domain(uri: str, name: str) -> None:
    """Ask the guest to power off (ACPI power button)."""
    _power(uri, name, lambda dom: dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN))


def destroy_domain(uri: str, name: str) -> None:
    """Power off at once; a domain already off is left alone."""

    def op(dom: libvirt.virDomain) -> None:
        if dom.isActive():
            dom.destroy()

    _power(uri, name, op)


def reboot_domain(uri: str, name: str) -> None:
    _power(uri, name, lambda dom: dom.reboot(libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN))


def reset_domain(uri: str, name: str) -> None:
    _power(uri, name, lambda dom: dom.reset(0))


def suspend_domain(uri: str, name: str) -> None:
    _power(uri, name, lambda dom: dom.suspend())


def resume_domain(uri: str, name: str) -> None:
    _power(uri, name, lambda dom: dom.resume())


def undefine_domain(uri: str, name: str) -> bool:
    """Power off and undefine with its snapshot/NVRAM metadata; False if it was already gone."""

    def op(conn: libvirt.virConnect) -> None:
        dom = _dom(conn, name)
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefineFlags(_UNDEFINE_FLAGS)

    try:
        get_pool().call(uri, op)
    except NotFound:
        return False
    return True


def domain_xml_desc(uri: str, name: str, *, inactive: bool = False) -> str:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return get_pool().call(uri, lambda conn: _dom(conn, name).XMLDesc(flags))


def set_resources(uri: str, name: str, *, vcpus: int, memory_mib: int) -> None:
    """Change vCPUs and memory of a shut-off domain by redefining it."""

    def op(conn: libvirt.virConnect) -> None:
        dom = _dom(conn, name)
        if dom.isActive():
            raise OperationInvalid(f"Domain {name} must be shut off to be resized")
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        conn.defineXML(domain_xml.set_resources(xml, vcpus=vcpus, memory_mib=memory_mib))

    get_pool().call(uri, op)


def _volume_of(conn: libvirt.virConnect, path: str) -> tuple[str | None, str | None, int]:
    try:
        vol = conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        return None, None, 0
    try:
        pool = vol.storagePoolLookupByVolume().name()
    except libvirt.libvirtError:
        pool = None
    return pool, vol.name(), int(vol.info()[1])


def domain_details(uri: str, name: str) -> DomainDetails:
    def fetch(conn: libvirt.virConnect) -> DomainDetails:
        dom = _dom(conn, name)
        info = domain_xml.parse_domain(dom.XMLDesc(0))
        active = bool(dom.isActive())
        disks = []
        for disk in info.disks:
            pool, volume, capacity = _volume_of(conn, disk.path) if disk.path else (None, None, 0)
            if disk.path and active:
                try:
                    capacity = int(dom.blockInfo(disk.target)[0])
                except libvirt.libvirtError:
                    pass
            disks.append(
                DiskDetails(
                    target=disk.target,
                    device=disk.device,
                    path=disk.path,
                    format=disk.format,
                    capacity_bytes=capacity,
                    pool=pool,
                    volume=volume,
                )
            )
        return DomainDetails(
            name=dom.name(),
            uuid=dom.UUIDString(),
            state=_state(dom),
            active=active,
            persistent=bool(dom.isPersistent()),
            domain_type=info.domain_type,
            vcpus=info.vcpus,
            memory_mib=info.memory_mib,
            disks=disks,
            macs=[nic.mac for nic in info.nics if nic.mac],
            networks=[nic.network for nic in info.nics],
            vnc_port=info.vnc_port,
        )

    return get_pool().call(uri, fetch)


def interface_addresses(uri: str, name: str) -> list[str]:
    """IP addresses the host's DHCP server leased to the domain (empty when unknown)."""

    def fetch(conn: libvirt.virConnect) -> list[str]:
        dom = _dom(conn, name)
        if not dom.isActive():
            return []
        try:
            ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
        except libvirt.libvirtError:
            return []
        return [
            addr["addr"]
            for iface in (ifaces or {}).values()
            for addr in (iface.get("addrs") or [])
            if addr.get("addr")
        ]

    try:
        return get_pool().call(uri, fetch)
    except NotFound:
        return []


def network_active(uri: str, network: str) -> bool:
    def fetch(conn: libvirt.virConnect) -> bool:
        return bool(conn.networkLookupByName(network).isActive())

    try:
        return get_pool().call(uri, fetch)
    except NotFound:
        return False


def resize_volume(uri: str, pool: str, name: str, capacity_bytes: int) -> None:
    """Grow a volume to `capacity_bytes` (never shrinks)."""

    def op(conn: libvirt.virConnect) -> None:
        vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
        if int(vol.info()[1]) < capacity_bytes:
            vol.resize(capacity_bytes, 0)

    get_pool().call(uri, op)


# Snapshots: internal (qcow2) snapshots, built with a structured XML.


def _snapshot_details(snap: libvirt.virDomainSnapshot, current: str | None) -> SnapshotDetails:
    from . import xmlutil

    root = xmlutil.parse(snap.getXMLDesc(0))
    return SnapshotDetails(
        name=snap.getName(),
        description=xmlutil.text(root, "description"),
        state=xmlutil.text(root, "state"),
        created=int(xmlutil.text(root, "creationTime", "0") or 0),
        current=snap.getName() == current,
    )


def snapshot_create(
    uri: str, name: str, snapshot: str, description: str = "", *, quiesce: bool = False
) -> SnapshotDetails:
    """Take an internal snapshot; with `quiesce`, of a running domain with its guest's
    filesystems frozen by the guest agent (AgentUnavailable when no agent answers).

    libvirt's QUIESCE flag works only with disk-only (external) snapshots, so internal ones
    are bracketed by an explicit freeze and thaw; the thaw runs whatever the snapshot did.
    """
    xml = domain_xml.build_snapshot(snapshot, description)

    def op(conn: libvirt.virConnect) -> SnapshotDetails:
        dom = _dom(conn, name)
        snap = dom.snapshotCreateXML(xml, 0)
        return _snapshot_details(snap, snap.getName())

    frozen = quiesce and get_pool().call(uri, lambda conn: bool(_dom(conn, name).isActive()))
    if not frozen:
        return get_pool().call(uri, op)
    agent.fs_freeze(uri, name)
    try:
        details = get_pool().call(uri, op)
    except BaseException:
        try:
            agent.fs_thaw(uri, name)
        except VirtError:
            pass  # the snapshot's own error is the one to report
        raise
    agent.fs_thaw(uri, name)  # a guest left frozen must not pass unnoticed
    return details


def snapshot_revert(uri: str, name: str, snapshot: str) -> None:
    def op(conn: libvirt.virConnect) -> None:
        dom = _dom(conn, name)
        dom.revertToSnapshot(dom.snapshotLookupByName(snapshot, 0), 0)

    get_pool().call(uri, op)


def snapshot_delete(uri: str, name: str, snapshot: str) -> None:
    def op(conn: libvirt.virConnect) -> None:
        _dom(conn, name).snapshotLookupByName(snapshot, 0).delete(0)

    get_pool().call(uri, op)


__all__ = [
    "DiskDetails",
    "DomainDetails",
    "SnapshotDetails",
    "define_domain",
    "destroy_domain",
    "domain_details",
    "domain_exists",
    "domain_state",
    "domain_xml_desc",
    "interface_addresses",
    "network_active",
    "reboot_domain",
    "reset_domain",
    "resize_volume",
    "resume_domain",
    "set_resources",
    "shutdown_domain",
    "snapshot_create",
    "snapshot_delete",
    "snapshot_revert",
    "start_domain",
    "suspend_domain",
    "undefine_domain",
]
