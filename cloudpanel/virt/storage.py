"""Storage volumes in a host's pools: look up, create, overlay, clone, upload, delete.

Uploads go through libvirt's storage volume stream, so they work the same for a pool on this
machine and on a remote host (no shared filesystem, no scp). Volume XML is built with
ElementTree, never by formatting strings with names or paths.
"""

from __future__ import annotations

import contextlib
import errno
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from . import xmlutil
from .errors import VirtError
from .pool import get_pool

CHUNK_SIZE = 1024 * 1024  # bytes per stream.send(): bounded memory, few round trips
FORMATS = ("raw", "qcow2", "iso")

# Called with (bytes done, bytes total) during an upload; may raise to abort it.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    pool: str
    path: str
    key: str
    format: str
    capacity_bytes: int  # the guest-visible (virtual) size
    allocation_bytes: int  # what the volume uses on disk
    physical_bytes: int  # the file's size (a qcow2 file is smaller than its capacity)
    backing_path: str | None = None
    backing_format: str | None = None


@dataclass(frozen=True)
class UploadResult:
    volume: VolumeInfo
    bytes_sent: int
    sparse: bool


def _pool(conn: libvirt.virConnect, pool: str) -> libvirt.virStoragePool:
    return conn.storagePoolLookupByName(pool)


def _vol_format(fmt: str) -> str:
    """The formats volumes are made in ('iso' is libvirt's name for an ISO 9660 file)."""
    if fmt not in FORMATS:
        raise ValueError(f"unsupported volume format {fmt!r}")
    return fmt


def _info(vol: libvirt.virStorageVol, pool_name: str) -> VolumeInfo:
    root = xmlutil.parse(vol.XMLDesc(0))
    _type, capacity, allocation = vol.info()
    try:
        physical = int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
    except libvirt.libvirtError:  # drivers without the flag (test driver)
        physical = int(allocation)
    backing_path = xmlutil.text(root, "backingStore/path") or None
    return VolumeInfo(
        name=vol.name(),
        pool=pool_name,
        path=vol.path(),
        key=vol.key(),
        format=xmlutil.attr(root, "target/format", "type") or "raw",
        capacity_bytes=int(capacity),
        allocation_bytes=int(allocation),
        physical_bytes=physical,
        backing_path=backing_path,
        backing_format=xmlutil.attr(root, "backingStore/format", "type") or None
        if backing_path
        else None,
    )


def volume_xml(
    *,
    name: str,
    capacity_bytes: int,
    fmt: str,
    allocation_bytes: int | None = None,
    backing_path: str | None = None,
    backing_format: str | None = None,
) -> str:
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(int(capacity_bytes))
    if allocation_bytes is not None:
        ET.SubElement(root, "allocation", unit="bytes").text = str(int(allocation_bytes))
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=_vol_format(fmt))
    if backing_path:
        backing = ET.SubElement(root, "backingStore")
        ET.SubElement(backing, "path").text = backing_path
        ET.SubElement(backing, "format", type=_vol_format(backing_format or "raw"))
    return xmlutil.to_string(root)


def pool_refresh(uri: str, pool: str) -> None:
    """Re-read the pool's directory (libvirt caches volume sizes and formats)."""
    get_pool().call(uri, lambda conn: _pool(conn, pool).refresh(0))


def pool_path(uri: str, pool: str) -> str:
    """The pool's target path as the host sees it."""
    return get_pool().call(
        uri, lambda conn: xmlutil.text(xmlutil.parse(_pool(conn, pool).XMLDesc(0)), "target/path")
    )


def list_volumes(uri: str, pool: str) -> list[VolumeInfo]:
    def fetch(conn: libvirt.virConnect) -> list[VolumeInfo]:
        return sorted(
            (_info(v, pool) for v in _pool(conn, pool).listAllVolumes(0)), key=lambda v: v.name
        )

    return get_pool().call(uri, fetch)


def volume_info(uri: str, pool: str, name: str) -> VolumeInfo:
    """The volume's sizes, format and path; NotFound when it does not exist."""
    return get_pool().call(
        uri, lambda conn: _info(_pool(conn, pool).storageVolLookupByName(name), pool)
    )


def find_volume_by_name(uri: str, pool: str, name: str) -> VolumeInfo | None:
    """Like volume_info, but None when the volume does not exist (a missing pool still raises)."""

    def fetch(conn: libvirt.virConnect) -> VolumeInfo | None:
        target = _pool(conn, pool)
        try:
            vol = target.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise
        return _info(vol, pool)

    return get_pool().call(uri, fetch)


def _create_from_xml(uri: str, pool: str, xml: str) -> VolumeInfo:
    def create(conn: libvirt.virConnect) -> VolumeInfo:
        return _info(_pool(conn, pool).createXML(xml, 0), pool)

    return get_pool().call(uri, create)


def create_volume(
    uri: str,
    pool: str,
    name: str,
    capacity_bytes: int,
    fmt: str = "qcow2",
    allocation_bytes: int | None = 0,
) -> VolumeInfo:
    """A new empty volume (sparse unless allocation_bytes says otherwise)."""
    xml = volume_xml(
        name=name, capacity_bytes=capacity_bytes, fmt=fmt, allocation_bytes=allocation_bytes
    )
    return _create_from_xml(uri, pool, xml)


def create_overlay_volume(
    uri: str,
    pool: str,
    name: str,
    backing_path: str,
    backing_format: str,
    capacity_bytes: int,
) -> VolumeInfo:
    """A qcow2 volume whose reads fall through to `backing_path` (an image replica).

    capacity_bytes may be larger than the backing image (the guest sees a bigger disk), never
    smaller.
    """
    xml = volume_xml(
        name=name,
        capacity_bytes=capacity_bytes,
        fmt="qcow2",
        backing_path=backing_path,
        backing_format=backing_format,
    )
    return _create_from_xml(uri, pool, xml)


def clone_volume(
    uri: str,
    pool: str,
    source_name: str,
    name: str,
    capacity_bytes: int | None = None,
    fmt: str = "raw",
    source_pool: str | None = None,
) -> VolumeInfo:
    """A full, independent copy of a volume (converted to `fmt`), optionally grown."""

    def clone(conn: libvirt.virConnect) -> VolumeInfo:
        target = _pool(conn, pool)
        source = _pool(conn, source_pool or pool).storageVolLookupByName(source_name)
        capacity = capacity_bytes if capacity_bytes is not None else int(source.info()[1])
        xml = volume_xml(name=name, capacity_bytes=capacity, fmt=fmt, allocation_bytes=0)
        return _info(target.createXMLFrom(xml, source, 0), pool)

    return get_pool().call(uri, clone)


def delete_volume(uri: str, pool: str, name: str, *, missing_ok: bool = True) -> bool:
    """Delete the volume; returns False when it was already gone (and missing_ok)."""

    def delete(conn: libvirt.virConnect) -> bool:
        try:
            vol = _pool(conn, pool).storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if missing_ok and exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return False
            raise
        vol.delete(0)
        return True

    return get_pool().call(uri, delete)


def _data_extents(fh, size: int) -> list[tuple[int, int, bool]]:
    """(offset, length, is_data) runs of the file using SEEK_DATA/SEEK_HOLE."""
    fd = fh.fileno()
    runs: list[tuple[int, int, bool]] = []
    offset = 0
    while offset < size:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: only a hole remains
                raise
            data = size
        data = min(data, size)
        if data > offset:
            runs.append((offset, data - offset, False))
        if data >= size:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        runs.append((data, hole - data, True))
        offset = hole
    return runs


def upload_volume(
    uri: str,
    pool: str,
    name: str,
    source_path: str | os.PathLike,
    *,
    progress: Progress | None = None,
    sparse: bool = True,
) -> UploadResult:
    """Write a local file into an existing volume through a libvirt stream, from offset 0.

    With sparse=True holes in the file are sent as holes (a mostly-empty raw image costs no
    bandwidth). On any error or exception from `progress` the stream is aborted and the error
    re-raised; the caller decides what to do with the partial volume.
    """
    size = os.path.getsize(source_path)

    def upload(conn: libvirt.virConnect) -> UploadResult:
        vol = _pool(conn, pool).storageVolLookupByName(name)
        stream = conn.newStream(0)
        flags = libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM if sparse else 0
        finished = False
        try:
            with open(source_path, "rb") as fh:
                vol.upload(stream, 0, size, flags)
                done = 0
                runs = _data_extents(fh, size) if sparse else [(0, size, True)]
                for offset, length, is_data in runs:
                    if is_data:
                        fh.seek(offset)
                        done = _send_data(stream, fh, length, done, size, progress)
                    else:
                        stream.sendHole(length, 0)
                        done += length
                        if progress:
                            progress(done, size)
            stream.finish()
            finished = True
        finally:
            if not finished:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
        return UploadResult(volume=_info(vol, pool), bytes_sent=size, sparse=sparse)

    return get_pool().call(uri, upload)


def _send_data(
    stream: libvirt.virStream, fh, length: int, done: int, total: int, progress: Progress | None
) -> int:
    remaining = length
    while remaining:
        chunk = fh.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            raise VirtError("the source file ended early (was it truncated while uploading?)")
        view = memoryview(chunk)
        while len(view):
            sent = stream.send(bytes(view) if len(view) != len(chunk) else chunk)
            if sent < 0:
                raise VirtError("the volume upload stream refused data")
            view = view[sent:]
        remaining -= len(chunk)
        done += len(chunk)
        if progress:
            progress(done, total)
    return done


__all__ = [
    "CHUNK_SIZE",
    "UploadResult",
    "VolumeInfo",
    "clone_volume",
    "create_overlay_volume",
    "create_volume",
    "delete_volume",
    "find_volume_by_name",
    "list_volumes",
    "pool_path",
    "pool_refresh",
    "upload_volume",
    "volume_info",
    "volume_xml",
]
