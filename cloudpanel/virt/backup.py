"""Point-in-time copies of a domain's disks, and checksums of volumes.

Three ways, by what the domain and host allow:
- push: libvirt's backup API (virDomainBackupBegin, push mode) writes each disk into a
  volume the caller made, while the guest runs (QEMU's blockdev-backup);
- snapshot-copy, where the host has no backup support: an external disk-only snapshot
  makes the disks quiescent, they are copied, then an active block commit merges the
  overlay back and pivots;
- offline copy of a shut-off domain's volumes (a converting clone).

Every copy is a standalone qcow2 (backing chains are read through, never referenced).
Checksums stream the volume through libvirt, so they work for remote hosts too.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from . import xmlutil
from .errors import VirtError
from .pool import get_pool

# Called with (bytes done, bytes total); may raise (a cancelled job) to stop the copy.
Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]

POLL_INTERVAL = 0.2
COPY_TIMEOUT = 6 * 3600.0
CHUNK = 1024 * 1024
_ZEROS = bytes(CHUNK)


@dataclass(frozen=True)
class SourceDisk:
    """A disk of the domain worth backing up (device disk, backed by a file)."""

    target: str  # vda
    path: str
    format: str
    capacity_bytes: int
    pool: str | None
    volume: str | None


class BackupCancelled(VirtError):
    """The caller asked to stop; what was started on the host was aborted."""


class PushUnsupported(VirtError):
    """backupBegin was refused as unsupported although the capabilities offered it."""


_UNSUPPORTED = {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED}


def _dom(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    return conn.lookupByName(name)


def push_supported(uri: str, domain: str) -> bool:
    """Whether the host's QEMU offers the backup API for this domain's type, arch and
    machine (domain capabilities `<backup supported='yes'/>`, libvirt >= 7.2 with QEMU)."""

    def probe(conn: libvirt.virConnect) -> bool:
        root = xmlutil.parse(_dom(conn, domain).XMLDesc(0))
        os_type = root.find("os/type")
        arch = os_type.get("arch") if os_type is not None else None
        machine = os_type.get("machine") if os_type is not None else None
        try:
            caps = conn.getDomainCapabilities(None, arch, machine, root.get("type"), 0)
        except libvirt.libvirtError:
            return False
        node = xmlutil.parse(caps).find("features/backup")
        return node is not None and node.get("supported") == "yes"

    return get_pool().call(uri, probe)


def source_disks(uri: str, domain: str) -> list[SourceDisk]:
    """The domain's file-backed disks (cdroms and read-only disks are not backed up)."""

    def fetch(conn: libvirt.virConnect) -> list[SourceDisk]:
        dom = _dom(conn, domain)
        root = xmlutil.parse(dom.XMLDesc(0))
        disks = []
        for disk in root.findall("devices/disk"):
            if disk.get("device", "disk") != "disk" or disk.find("readonly") is not None:
                continue
            path = xmlutil.attr(disk, "source", "file")
            if not path:
                continue
            pool = volume = None
            capacity = 0
            try:
                vol = conn.storageVolLookupByPath(path)
                volume = vol.name()
                pool = vol.storagePoolLookupByVolume().name()
                capacity = int(vol.info()[1])
            except libvirt.libvirtError:
                pass
            target = xmlutil.attr(disk, "target", "dev")
            if dom.isActive():
                with contextlib.suppress(libvirt.libvirtError):
                    capacity = int(dom.blockInfo(target)[0])
            disks.append(
                SourceDisk(
                    target=target,
                    path=path,
                    format=xmlutil.attr(disk, "driver", "type") or "raw",
                    capacity_bytes=capacity,
                    pool=pool,
                    volume=volume,
                )
            )
        return disks

    return get_pool().call(uri, fetch)


def backup_xml(targets: dict[str, str], all_disks: list[str]) -> str:
    """<domainbackup mode='push'>: each disk in `targets` (target dev -> file) is written
    as qcow2 into that existing file; the domain's other disks are left out."""
    root = ET.Element("domainbackup", mode="push")
    disks = ET.SubElement(root, "disks")
    for name in all_disks:
        if name not in targets:
            ET.SubElement(disks, "disk", name=name, backup="no")
            continue
        disk = ET.SubElement(disks, "disk", name=name, backup="yes", type="file")
        ET.SubElement(disk, "target", file=targets[name])
        ET.SubElement(disk, "driver", type="qcow2")
    return xmlutil.to_string(root)


def _job_progress(stats: dict) -> tuple[int, int]:
    total = int(stats.get("disk_total") or stats.get("data_total") or 0)
    done = int(stats.get("disk_processed") or stats.get("data_processed") or 0)
    return done, total


def push_backup(
    uri: str,
    domain: str,
    targets: dict[str, str],
    *,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
    timeout: float = COPY_TIMEOUT,
) -> dict:
    """Back up the running domain's disks into the (pre-created qcow2) files of `targets`;
    returns libvirt's completed job stats. On cancel, timeout or failure the job is aborted
    and VirtError (BackupCancelled) raised; the target files are the caller's to remove.
    PushUnsupported: the host refused the backup API itself (nothing was started)."""

    def begin(conn: libvirt.virConnect) -> None:
        dom = _dom(conn, domain)
        names = [
            xmlutil.attr(d, "target", "dev")
            for d in xmlutil.parse(dom.XMLDesc(0)).findall("devices/disk")
        ]
        try:
            dom.backupBegin(
                backup_xml(targets, names), None, libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _UNSUPPORTED:
                raise PushUnsupported(exc.get_error_message() or str(exc)) from exc
            raise

    get_pool().call(uri, begin)
    deadline = time.monotonic() + timeout
    try:
        while True:
            stats = get_pool().call(uri, lambda conn: _dom(conn, domain).jobStats(0))
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                break
            if progress:
                progress(*_job_progress(stats))
            if cancelled and cancelled():
                raise BackupCancelled("The backup was cancelled")
            if time.monotonic() > deadline:
                raise VirtError(f"The backup did not finish within {timeout:g} s")
            time.sleep(POLL_INTERVAL)
    except BaseException:
        with contextlib.suppress(VirtError):
            get_pool().call(uri, lambda conn: _dom(conn, domain).abortJob())
        raise
    done = get_pool().call(
        uri, lambda conn: _dom(conn, domain).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    )
    if done.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED:
        why = done.get("errmsg") or "libvirt reports the backup job failed"
        raise VirtError(f"The backup failed: {why}")
    return done


def _snapshot_xml(overlays: dict[str, str], all_disks: list[str]) -> str:
    root = ET.Element("domainsnapshot")
    disks = ET.SubElement(root, "disks")
    for name in all_disks:
        if name not in overlays:
            ET.SubElement(disks, "disk", name=name, snapshot="no")
            continue
        disk = ET.SubElement(disks, "disk", name=name, snapshot="external")
        ET.SubElement(disk, "driver", type="qcow2")
        ET.SubElement(disk, "source", file=overlays[name])
    return xmlutil.to_string(root)


def _disk_names(dom: libvirt.virDomain) -> list[str]:
    return [
        xmlutil.attr(d, "target", "dev")
        for d in xmlutil.parse(dom.XMLDesc(0)).findall("devices/disk")
    ]


def snapshot_copy_backup(
    uri: str,
    domain: str,
    disks: list[SourceDisk],
    copy: Callable[[SourceDisk], None],
    *,
    cancelled: Cancelled | None = None,
    timeout: float = COPY_TIMEOUT,
) -> None:
    """The fallback without the backup API: freeze each disk's image behind an external
    overlay (disk-only, atomic, no metadata), `copy` each now-quiescent base, then merge the
    overlays back (active block commit + pivot) and delete them, whatever the copy did."""
    overlays = {d.target: f"{d.path}.backup-overlay" for d in disks}

    def snapshot(conn: libvirt.virConnect) -> None:
        dom = _dom(conn, domain)
        flags = (
            libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
            | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
            | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
        )
        dom.snapshotCreateXML(_snapshot_xml(overlays, _disk_names(dom)), flags)

    get_pool().call(uri, snapshot)
    try:
        for disk in disks:
            if cancelled and cancelled():
                raise BackupCancelled("The backup was cancelled")
            copy(disk)
    finally:
        problems = []
        for disk in disks:
            try:
                _commit_back(uri, domain, disk.target, timeout)
            except VirtError as exc:
                problems.append(f"{disk.target}: {exc}")
                continue
            _remove_file_volume(uri, overlays[disk.target])
        if problems:
            raise VirtError("Merging the backup overlay back failed: " + "; ".join(problems))


def _commit_back(uri: str, domain: str, target: str, timeout: float) -> None:
    """Active commit of the top image into its base, then pivot back to the base."""

    def begin(conn: libvirt.virConnect) -> None:
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | libvirt.VIR_DOMAIN_BLOCK_COMMIT_SHALLOW
        _dom(conn, domain).blockCommit(target, None, None, 0, flags)

    get_pool().call(uri, begin)
    deadline = time.monotonic() + timeout
    while True:
        info = get_pool().call(uri, lambda conn: _dom(conn, domain).blockJobInfo(target, 0))
        if not info:
            raise VirtError(f"The block commit of {target} ended without reaching ready")
        if info.get("end", 0) and info.get("cur") == info.get("end"):
            break
        if time.monotonic() > deadline:
            raise VirtError(f"The block commit of {target} did not converge in {timeout:g} s")
        time.sleep(POLL_INTERVAL)
    get_pool().call(
        uri,
        lambda conn: _dom(conn, domain).blockJobAbort(
            target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT
        ),
    )
    # The pivot completes asynchronously: wait until no block job remains on the disk.
    while get_pool().call(uri, lambda conn: _dom(conn, domain).blockJobInfo(target, 0)):
        if time.monotonic() > deadline:
            raise VirtError(f"The pivot of {target} did not complete in {timeout:g} s")
        time.sleep(POLL_INTERVAL)


def _remove_file_volume(uri: str, path: str) -> None:
    """Delete a file the pool holds, by path (the pool is refreshed to see it first)."""

    def remove(conn: libvirt.virConnect) -> None:
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            with contextlib.suppress(libvirt.libvirtError):
                pool.refresh(0)
        with contextlib.suppress(libvirt.libvirtError):
            conn.storageVolLookupByPath(path).delete(0)

    get_pool().call(uri, remove)


def volume_sha256(
    uri: str, pool: str, name: str, *, progress: Progress | None = None
) -> tuple[str, int]:
    """(sha256, size) of the volume's file as stored, streamed through libvirt (a sparse
    stream: holes are hashed as the zeros they read as, without crossing the wire)."""

    def digest(conn: libvirt.virConnect) -> tuple[str, int]:
        vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
        hasher = hashlib.sha256()
        state = {"done": 0, "total": 0}
        with contextlib.suppress(libvirt.libvirtError):
            state["total"] = int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
        stream = conn.newStream(0)
        finished = False

        def advance(length: int) -> None:
            state["done"] += length
            if progress:
                progress(state["done"], state["total"])

        def on_data(_stream, data: bytes, _opaque) -> int:
            hasher.update(data)
            advance(len(data))
            return len(data)

        def on_hole(_stream, length: int, _opaque) -> int:
            left = length
            while left:
                piece = min(left, CHUNK)
                hasher.update(_ZEROS[:piece])
                left -= piece
            advance(length)
            return 0

        try:
            vol.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            stream.sparseRecvAll(on_data, on_hole, None)
            stream.finish()
            finished = True
        finally:
            if not finished:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
        return hasher.hexdigest(), state["done"]

    return get_pool().call(uri, digest)


def download_volume(
    uri: str,
    pool: str,
    name: str,
    write: Callable[[bytes], None],
    *,
    progress: Progress | None = None,
) -> int:
    """Stream the volume's file through libvirt into `write` (in chunks); returns the bytes
    written. An exception from `write` or `progress` aborts the stream."""

    def fetch(conn: libvirt.virConnect) -> int:
        vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
        total = 0
        with contextlib.suppress(libvirt.libvirtError):
            total = int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
        stream = conn.newStream(0)
        done = 0
        finished = False
        try:
            vol.download(stream, 0, 0, 0)
            while True:
                data = stream.recv(CHUNK)
                if data == -2:
                    raise VirtError("the download stream would block")
                if not data:
                    break
                write(data)
                done += len(data)
                if progress:
                    progress(done, total)
            stream.finish()
            finished = True
        finally:
            if not finished:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
        return done

    return get_pool().call(uri, fetch)


__all__ = [
    "BackupCancelled",
    "PushUnsupported",
    "SourceDisk",
    "backup_xml",
    "download_volume",
    "push_backup",
    "push_supported",
    "snapshot_copy_backup",
    "source_disks",
    "volume_sha256",
]
