"""An image's copies on hosts: one volume per (image, host, pool), tracked as an ImageReplica.

A copy is claimed by creating its row in status copying (the unique constraint makes the claim
a lease); the copier touches the row while it streams, so a row nobody touched for
REPLICA_STALE was abandoned and may be taken over.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from cloudpanel import virt
from cloudpanel.errors import Conflict
from cloudpanel.virt import storage
from hosts.connection import connection_uri
from hosts.models import Host

from .models import Image, ImageReplica
from .progress import PROGRESS_EVERY, Throttle, describe_failure, mib
from .store import EXTENSIONS, image_path, read_chunks

log = logging.getLogger(__name__)

REPLICA_HEARTBEAT = 5.0  # seconds between touches of a replica being copied
REPLICA_STALE = timedelta(seconds=120)  # a copy not touched for this long was abandoned


def replica_volume_name(image: Image) -> str:
    """image-<id>-<sha256[:12]>.<ext>: the content is in the name, so a copy is recognisable."""
    return f"image-{image.id}-{image.sha256[:12]}.{EXTENSIONS[image.disk_format]}"


def _claim_replica(image: Image, host: Host, pool: str, volume: str):
    """(replica, claimed): claimed means this caller must copy; otherwise it is usable."""
    existing = ImageReplica.objects.filter(image=image, host=host, pool=pool).first()
    if existing is not None:  # the usual case: no write transaction (a lock) to find it
        return existing, False
    try:
        with transaction.atomic():
            replica = ImageReplica.objects.create(
                image=image, host=host, pool=pool, volume=volume,
                status=ImageReplica.Status.COPYING,
            )  # fmt: skip
        return replica, True
    except IntegrityError:
        replica = ImageReplica.objects.get(image=image, host=host, pool=pool)
    return replica, False


def image_ensure_replica(
    *,
    image: Image,
    host: Host,
    pool: str | None = None,
    ctx=None,
    progress_range: tuple[int, int] | None = None,
    wait_timeout: float = 3600.0,
) -> ImageReplica:
    """Make sure the image is in `pool` (default: the host's) on `host`; return its active replica.

    Idempotent: a replica that is active, has the image's sha256 and whose volume is present
    with the right size is returned as is (returned replica has `copied = False`). Otherwise
    the file is uploaded through a libvirt stream (`copied = True`). When another job is
    copying the same image to the same place, this waits for it. Progress goes to
    `ctx.progress`: mapped into `progress_range` (e.g. (5, 40)) when given, otherwise only the
    step text changes and the caller's percentage stays. Cancellation is honoured. A failed
    copy leaves no volume and a replica in status error.
    """
    image.refresh_from_db()
    if image.status != Image.Status.ACTIVE or not image.file:
        raise Conflict(f"Image {image.name} is {image.status}, not active; it cannot be copied.")
    if not image.sha256:
        _fill_in_sha256(image)
    if pool is None:
        pool = host.default_pool
    uri = connection_uri(host)
    volume = replica_volume_name(image)
    deadline = time.monotonic() + wait_timeout
    waiting_reported = False
    while True:
        replica, claimed = _claim_replica(image, host, pool, volume)
        if claimed:
            break
        if (
            replica.status == ImageReplica.Status.ACTIVE
            and replica.sha256 == image.sha256
            and replica.volume == volume
        ):
            found = storage.find_volume_by_name(uri, pool, volume)
            if found is not None and found.physical_bytes == image.file_size:
                replica.copied = False
                return replica
        elif (
            replica.status == ImageReplica.Status.COPYING
            and timezone.now() - replica.updated_at < REPLICA_STALE
        ):
            # Another job is copying it right now: wait for its result.
            if time.monotonic() > deadline:
                raise Conflict(f"Timed out waiting for another copy of {image.name} to {host}.")
            if ctx is not None:
                if not waiting_reported:
                    _report(ctx, progress_range, 0, f"Waiting for a copy to {host.name}/{pool}")
                    waiting_reported = True
                ctx.check_cancelled()
            time.sleep(1.0)
            continue
        # Missing volume, wrong content, an error or an abandoned copy: take it over.
        taken = ImageReplica.objects.filter(
            pk=replica.pk, status=replica.status, updated_at=replica.updated_at
        ).update(
            status=ImageReplica.Status.COPYING, volume=volume, sha256="", error="",
            updated_at=timezone.now(),
        )  # fmt: skip
        if taken:
            if replica.volume and replica.volume != volume:
                with contextlib.suppress(virt.VirtError):  # a copy under an older name
                    storage.delete_volume(uri, pool, replica.volume)
            replica.refresh_from_db()
            break
    return _copy_replica(image, host, replica, uri, pool, volume, ctx, progress_range)


def _copy_replica(
    image: Image,
    host: Host,
    replica: ImageReplica,
    uri: str,
    pool: str,
    volume: str,
    ctx,
    progress_range: tuple[int, int] | None,
) -> ImageReplica:
    where = f"{host.name}/{pool}"
    source = image_path(image.file)
    progress_throttle = Throttle(PROGRESS_EVERY)
    heartbeat = Throttle(REPLICA_HEARTBEAT)

    def report(done: int, total: int) -> None:
        if heartbeat.due():
            ImageReplica.objects.filter(pk=replica.pk).update(updated_at=timezone.now())
        if ctx is not None and progress_throttle.due(force=done >= total):
            step = f"Copying {image.name} to {where}: {mib(done)} of {mib(total)}"
            _report(ctx, progress_range, done / max(total, 1), step)

    try:
        shared = _copy_on_shared_storage(image, replica, uri, pool, volume)
        if shared is not None:
            return shared
        if ctx is not None:
            _report(ctx, progress_range, 0, f"Copying {image.name} to {where}")
        # A volume of that name without an active replica is a leftover of a failed copy.
        storage.delete_volume(uri, pool, volume)
        storage.create_volume(uri, pool, volume, image.file_size, fmt="raw", allocation_bytes=0)
        try:
            storage.upload_volume(uri, pool, volume, source, progress=report, sparse=True)
        except virt.VirtError as exc:
            if "sparse" not in str(exc).lower() and "flags" not in str(exc).lower():
                raise
            # An older host without sparse streams: send every byte.
            storage.upload_volume(uri, pool, volume, source, progress=report, sparse=False)
        info = storage.volume_info(uri, pool, volume)
        if info.physical_bytes != image.file_size:
            raise virt.VirtError(
                f"The copy on {where} has {info.physical_bytes} bytes, expected {image.file_size}."
            )
    except BaseException as exc:
        with contextlib.suppress(virt.VirtError):
            storage.delete_volume(uri, pool, volume)
        ImageReplica.objects.filter(pk=replica.pk).update(
            status=ImageReplica.Status.ERROR,
            error=describe_failure(exc, "The copy")[:4000],
            updated_at=timezone.now(),
        )
        raise
    replica.status = ImageReplica.Status.ACTIVE
    replica.path = info.path
    replica.sha256 = image.sha256
    replica.volume = volume
    replica.error = ""
    replica.save()
    replica.copied = True
    if ctx is not None:
        _report(ctx, progress_range, 1, f"{image.name} is on {where}")
    return replica


def _copy_on_shared_storage(
    image: Image, replica: ImageReplica, uri: str, pool: str, volume: str
) -> ImageReplica | None:
    """In a pool other hosts see too (NFS, ...), another host's active copy is already this
    host's: use it (replacing it would pull the file from under that host's guests)."""
    others = ImageReplica.objects.filter(
        image=image, pool=pool, sha256=image.sha256, status=ImageReplica.Status.ACTIVE
    ).exclude(pk=replica.pk)
    if not others.exists():
        return None
    storage.pool_refresh(uri, pool)  # another host wrote the file: this one's list is old
    found = storage.find_volume_by_name(uri, pool, volume)
    if found is None or found.physical_bytes != image.file_size:
        return None
    if not others.filter(path=found.path).exists():
        return None
    replica.status, replica.path, replica.sha256 = (
        ImageReplica.Status.ACTIVE, found.path, image.sha256,
    )  # fmt: skip
    replica.volume, replica.error = volume, ""
    replica.save()
    replica.copied = False
    return replica


def _report(ctx, progress_range: tuple[int, int] | None, fraction: float, step: str) -> None:
    if progress_range is None:
        ctx.progress(ctx.job.progress, step)  # the caller owns the percentage
        return
    low, high = progress_range
    ctx.progress(low + int((high - low) * fraction), step)


def _fill_in_sha256(image: Image) -> None:
    """Images made outside the services (fixtures, the admin) may lack a checksum."""
    digest = hashlib.sha256()
    with open(image_path(image.file), "rb") as fh:
        for chunk in read_chunks(fh):
            digest.update(chunk)
    image.sha256 = digest.hexdigest()
    Image.objects.filter(pk=image.pk).update(sha256=image.sha256)


def image_replica_mark_abandoned(*, image_id: int, host_id: int, pool: str) -> None:
    """After a worker died mid-copy: the replica is unusable until copied again."""
    ImageReplica.objects.filter(
        image_id=image_id, host_id=host_id, pool=pool, status=ImageReplica.Status.COPYING
    ).update(
        status=ImageReplica.Status.ERROR,
        error="The copy was abandoned (its worker stopped).",
        updated_at=timezone.now(),
    )


def replica_volumes_delete(replicas: Iterable[ImageReplica]) -> list[str]:
    """Remove the replicas' volumes from their hosts (their rows are already gone with the
    image); returns one line per volume that could not be removed."""
    problems = []
    for replica in replicas:
        host, pool, volume = replica.host, replica.pool, replica.volume
        try:
            storage.delete_volume(connection_uri(host), pool, volume)
        except virt.VirtError as exc:
            log.warning("could not delete volume %s on %s/%s: %s", volume, host, pool, exc)
            problems.append(f"{host.name}/{pool}/{volume}: {exc}")
    return problems
