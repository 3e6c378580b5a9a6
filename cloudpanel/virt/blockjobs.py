"""Block copy of a running domain's disk (disk mirroring): start, read, pivot, stop.

The copy goes to a volume made beforehand through libvirt (REUSE_EXT), so the panel's Volume
row exists before any file does. The copy is full (not shallow): the destination holds every
block of the disk, backing image included, and has no backing file of its own, so another
host that sees the same pool path can boot from it alone.

Our domains are persistent, and libvirt refuses a block copy of a persistent domain ("domain
is not transient") unless the job is TRANSIENT_JOB: the job does not survive the domain's
restart. When the domain stops (shutdown, destroy) the copy ends without any block-job event
(seen on libvirt 9.0 / QEMU 7.2): callers read `copy_status` to notice.

Events (cloudpanel/virt/events.py) name the outcomes: "vda copy ready" once the copy
converged, "vda copy completed" after a pivot, "vda copy canceled" after a stop (abort
without pivot), "vda copy failed".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from . import xmlutil
from .errors import NotFound, OperationInvalid
from .pool import get_pool

COPY_FLAGS = libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB


@dataclass(frozen=True)
class CopyStatus:
    disk: str
    cur: int  # bytes copied (QEMU's progress; `end` grows while the guest writes)
    end: int
    # QEMU says the copy converged (job ready): from now on every guest write goes to both
    # copies (with background copy, the mirror may trail by the writes in flight: `cur`
    # then falls a little behind `end` for a moment). Pivot and stop need only this.
    ready: bool
    destination: str  # the mirror's path, as the domain's live XML names it

    @property
    def in_sync(self) -> bool:
        """Ready, with nothing left to copy right now."""
        return self.ready and self.cur == self.end

    @property
    def percent(self) -> int:
        return 100 if self.end <= 0 else int(100 * self.cur / self.end)


@dataclass(frozen=True)
class DiskSize:
    capacity_bytes: int  # guest-visible size
    allocation_bytes: int
    source: str  # the disk's current source path
    format: str


def _dom(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    return conn.lookupByName(name)


def _disk_el(root: ET.Element, disk: str) -> ET.Element | None:
    for el in root.findall("devices/disk"):
        if xmlutil.attr(el, "target", "dev") == disk:
            return el
    return None


def destination_xml(path: str, fmt: str = "qcow2") -> str:
    """The <disk> a block copy writes to: a file of format `fmt` that already exists."""
    root = ET.Element("disk", type="file")
    ET.SubElement(root, "source", file=path)
    ET.SubElement(root, "driver", type=fmt)
    return xmlutil.to_string(root)


def disk_size(uri: str, domain: str, disk: str) -> DiskSize:
    """The running disk's size and source (NotFound for an unknown disk)."""

    def fetch(conn: libvirt.virConnect) -> DiskSize:
        dom = _dom(conn, domain)
        el = _disk_el(xmlutil.parse(dom.XMLDesc(0)), disk)
        if el is None or el.get("device", "disk") != "disk":
            raise NotFound(f"Domain {domain} has no disk {disk}")
        capacity, allocation, _physical = dom.blockInfo(disk)
        return DiskSize(
            capacity_bytes=int(capacity),
            allocation_bytes=int(allocation),
            source=xmlutil.attr(el, "source", "file"),
            format=xmlutil.attr(el, "driver", "type") or "raw",
        )

    return get_pool().call(uri, fetch)


def copy_start(
    uri: str, domain: str, disk: str, dest_path: str, *, fmt: str = "qcow2", bandwidth: int = 0
) -> None:
    """Start a full block copy of `disk` into the existing file `dest_path`.

    bandwidth: bytes/s, 0 for no limit."""
    params = {libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH: int(bandwidth)} if bandwidth else None
    xml = destination_xml(dest_path, fmt)

    def op(conn: libvirt.virConnect) -> None:
        dom = _dom(conn, domain)
        if not dom.isActive():
            raise OperationInvalid(f"Domain {domain} is not running")
        dom.blockCopy(disk, xml, params, COPY_FLAGS)

    get_pool().call(uri, op)


def copy_status(uri: str, domain: str, disk: str) -> CopyStatus | None:
    """The disk's block copy as it is now, or None when it has none (domain shut off or
    gone included)."""

    def fetch(conn: libvirt.virConnect) -> CopyStatus | None:
        try:
            dom = _dom(conn, domain)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        if not dom.isActive():
            return None
        info = dom.blockJobInfo(disk, 0)
        if not info or info.get("type") != libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY:
            return None
        el = _disk_el(xmlutil.parse(dom.XMLDesc(0)), disk)
        mirror = el.find("mirror") if el is not None else None
        cur, end = int(info.get("cur", 0)), int(info.get("end", 0))
        # libvirt marks the <mirror> ready once QEMU said so (cur == end alone can come a
        # moment before that, and need not hold after it while the guest writes).
        ready = mirror is not None and mirror.get("ready") == "yes"
        destination = ""
        if mirror is not None:
            destination = mirror.get("file") or xmlutil.attr(mirror, "source", "file")
        return CopyStatus(disk=disk, cur=cur, end=end, ready=ready, destination=destination)

    return get_pool().call(uri, fetch)


def copy_pivot(uri: str, domain: str, disk: str) -> str:
    """Switch the domain over to the (ready) copy; waits for it. Returns the disk's new
    source path (libvirt 9.0 rewrites the persistent definition too)."""

    def op(conn: libvirt.virConnect) -> str:
        dom = _dom(conn, domain)
        dom.blockJobAbort(disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
        el = _disk_el(xmlutil.parse(dom.XMLDesc(0)), disk)
        return xmlutil.attr(el, "source", "file") if el is not None else ""

    return get_pool().call(uri, op)


def copy_cancel(uri: str, domain: str, disk: str) -> bool:
    """End the block copy without pivoting; waits for it. A ready copy is left as a
    consistent point-in-time image of the disk. False when there was no job."""

    def op(conn: libvirt.virConnect) -> bool:
        try:
            dom = _dom(conn, domain)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise
        if not dom.isActive() or not dom.blockJobInfo(disk, 0):
            return False
        dom.blockJobAbort(disk, 0)
        return True

    return get_pool().call(uri, op)


def disk_source(uri: str, domain: str, disk: str, *, inactive: bool = False) -> str:
    """The disk's source path in the live (or persistent) definition; '' without it."""
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0

    def fetch(conn: libvirt.virConnect) -> str:
        el = _disk_el(xmlutil.parse(_dom(conn, domain).XMLDesc(flags)), disk)
        return xmlutil.attr(el, "source", "file") if el is not None else ""

    return get_pool().call(uri, fetch)


def parse_event_detail(detail: str) -> tuple[str, str, str]:
    """'vda copy ready' -> ('vda', 'copy', 'ready') (as events.py words a block-job event)."""
    parts = detail.split()
    if len(parts) != 3:
        return ("", "", "")
    return parts[0], parts[1], parts[2]


__all__ = [
    "COPY_FLAGS",
    "CopyStatus",
    "DiskSize",
    "copy_cancel",
    "copy_pivot",
    "copy_start",
    "copy_status",
    "destination_xml",
    "disk_size",
    "disk_source",
    "parse_event_detail",
]
