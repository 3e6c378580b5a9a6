"""Copy a storage volume from one host's pool to another's through libvirt storage streams.

The bytes go from the source daemon's download stream straight into the target daemon's
upload stream, both sparse: holes in the source file travel as hole messages, so a thin
qcow2 or raw volume stays thin on the target and costs no bandwidth for what it does not
hold. No shared filesystem and no ssh are needed. The copy is of the volume's file (a
qcow2 file stays a qcow2 file, with the same header and backing file name).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import libvirt

from . import storage
from .errors import AlreadyExists, VirtError
from .pool import get_pool, translate

CHUNK_SIZE = 1024 * 1024  # bytes per recv: bounded memory, few round trips


class CopyCancelled(VirtError):
    """The caller's `cancelled()` said stop; the partial target volume is gone."""


def copy_volume(
    src_uri: str,
    src_pool: str,
    src_name: str,
    dst_uri: str,
    dst_pool: str,
    dst_name: str,
    *,
    fmt: str = "qcow2",
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> storage.VolumeInfo:
    """Create `dst_pool/dst_name` on the target (same format and capacity as the source) and
    fill it with the source volume's bytes; returns the new volume's info.

    progress(done_bytes, total_bytes) is called as the copy advances (holes count as done);
    it may raise to abort. cancelled() is asked between chunks; when true the copy stops with
    CopyCancelled. On any failure the partial target volume is deleted. A target volume of
    that name that exists already is refused (AlreadyExists), never overwritten.
    """
    source = storage.volume_info(src_uri, src_pool, src_name)
    if (source.format == "qcow2") != (fmt == "qcow2"):
        raise VirtError(
            f"Volume {src_pool}/{src_name} is {source.format}, not {fmt}: refusing to copy it "
            "as another format."
        )
    pool = get_pool()
    try:
        src_conn = pool.get(src_uri)
        dst_conn = pool.get(dst_uri)
        target_pool = dst_conn.storagePoolLookupByName(dst_pool)
        try:
            target_pool.storageVolLookupByName(dst_name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
        else:
            raise AlreadyExists(f"Volume {dst_pool}/{dst_name} already exists on the target.")
        src_vol = src_conn.storagePoolLookupByName(src_pool).storageVolLookupByName(src_name)
        xml = storage.volume_xml(
            name=dst_name,
            capacity_bytes=source.capacity_bytes,
            fmt=fmt,
            allocation_bytes=0,
            backing_path=source.backing_path,
            backing_format=source.backing_format,
        )
        dst_vol = target_pool.createXML(xml, 0)
    except libvirt.libvirtError as exc:
        raise translate(exc, dst_uri) from exc
    try:
        _stream(src_conn, src_vol, dst_conn, dst_vol, source.physical_bytes, progress, cancelled)
        target_pool.refresh(0)  # libvirt caches the sizes it saw at creation
        copied = storage.volume_info(dst_uri, dst_pool, dst_name)
        if copied.physical_bytes != source.physical_bytes:
            raise VirtError(
                f"The copy of {src_name} has {copied.physical_bytes} bytes, the source "
                f"{source.physical_bytes}."
            )
    except BaseException as exc:
        with contextlib.suppress(libvirt.libvirtError, VirtError):
            dst_vol.delete(0)
        if isinstance(exc, libvirt.libvirtError):
            raise translate(exc, dst_uri) from exc
        raise
    return copied


def _stream(
    src_conn: libvirt.virConnect,
    src_vol: libvirt.virStorageVol,
    dst_conn: libvirt.virConnect,
    dst_vol: libvirt.virStorageVol,
    total: int,
    progress: Callable[[int, int], None] | None,
    cancelled: Callable[[], bool] | None,
) -> None:
    """Pump the source's sparse download into the target's sparse upload."""
    down = src_conn.newStream(0)
    up = dst_conn.newStream(0)
    finished = False
    try:
        src_vol.download(down, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
        dst_vol.upload(up, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        done = 0
        while True:
            if cancelled is not None and cancelled():
                raise CopyCancelled("The volume copy was cancelled.")
            got = down.recvFlags(CHUNK_SIZE, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
            if got == -3:  # a hole: tell the target to skip as much
                length = down.recvHole(0)
                up.sendHole(length, 0)
                done += length
            elif isinstance(got, int):
                raise VirtError(f"The download stream answered {got}.")
            elif not got:
                break
            else:
                _send_all(up, got)
                done += len(got)
            if progress is not None:
                progress(min(done, total), total)
        down.finish()
        up.finish()
        finished = True
    finally:
        if not finished:
            for stream in (down, up):
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()


def _send_all(stream: libvirt.virStream, data: bytes) -> None:
    view = memoryview(data)
    while len(view):
        sent = stream.send(bytes(view))
        if sent < 0:
            raise VirtError("The upload stream refused data.")
        view = view[sent:]


__all__ = ["CHUNK_SIZE", "CopyCancelled", "copy_volume"]
