"""Image rules: upload, import from a URL, update, delete, and copies on hosts.

Every way in (API, browser, URL import) ends the same way: check the sha256, inspect the file
with qemu-img, move it into the store (a rename). A rejected file never stays on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import time
from collections.abc import Iterable
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from cloudpanel import virt
from cloudpanel.errors import Conflict
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import JobConflict, JobFailed, job_create
from cloudpanel.projects.access import can_act, is_admin
from cloudpanel.projects.models import Project
from cloudpanel.projects.services import project_get_default
from cloudpanel.virt import storage
from hosts.models import Host
from hosts.services import connection_uri

from . import fetch
from .fetch import DownloadError
from .inspect import ImageRejected, Inspection, inspect_image
from .models import Image, ImageReplica
from .selectors import can_manage_image, projects_user_can_upload_to
from .store import (
    CHUNK_SIZE,
    EXTENSIONS,
    FileTooLarge,
    StagedFile,
    image_path,
    incoming_dir,
    max_file_size,
    read_chunks,
    stage_chunks,
    store_root,
)

log = logging.getLogger(__name__)

IMPORT_JOB = "image.import"
MIRROR_JOB = "image.mirror"
PROGRESS_EVERY = 1.0  # seconds between job progress writes
REPLICA_HEARTBEAT = 5.0  # seconds between touches of a replica being copied
REPLICA_STALE = timedelta(seconds=120)  # a copy not touched for this long was abandoned
SHA256_CHARS = set("0123456789abcdef")


# ---------------------------------------------------------------- creating images


def _normalize_sha256(value: str | None) -> str:
    value = (value or "").strip().lower()
    if value and (len(value) != 64 or not set(value) <= SHA256_CHARS):
        raise ValidationError({"sha256": "Give the sha256 as 64 hexadecimal characters."})
    return value


def _resolve_project(user, project: Project | None) -> Project:
    if project is not None:
        return project
    if is_admin(user):
        return project_get_default()
    choices = list(projects_user_can_upload_to(user)[:2])
    if len(choices) == 1:
        return choices[0]
    raise ValidationError({"project": "Choose the project the image belongs to."})


def _new_image(
    *,
    user,
    name: str,
    disk_format: str,
    project: Project | None,
    visibility: str | None,
    os_type: str | None,
    min_disk_gib: int | None,
    min_ram_mib: int | None,
    source_url: str = "",
) -> Image:
    """An unsaved, validated Image after the permission checks."""
    if not user or not user.is_authenticated:
        raise PermissionDenied("Log in to add images.")
    project = _resolve_project(user, project)
    if visibility is None:
        visibility = Image.Visibility.PUBLIC if is_admin(user) else Image.Visibility.PROJECT
    if visibility == Image.Visibility.PUBLIC and not is_admin(user):
        raise PermissionDenied("Only administrators can add public images.")
    if not can_act(user, project):
        raise PermissionDenied(f"You may not add images to project {project.name}.")
    image = Image(
        name=name,
        disk_format=disk_format,
        project=project,
        visibility=visibility,
        os_type=os_type if os_type is not None else "linux",
        min_disk_gib=min_disk_gib or 0,
        min_ram_mib=min_ram_mib or 0,
        owner=user,
        source_url=source_url,
    )
    image.full_clean(exclude=["file"])
    return image


def _stage(fileobj, chunks: Iterable[bytes] | None) -> StagedFile:
    staged = getattr(fileobj, "staged", None)
    if isinstance(staged, StagedFile) and staged.path.parent == incoming_dir():
        return staged  # streamed into the store by ImageUploadHandler: no copy
    source = chunks if chunks is not None else read_chunks(fileobj, CHUNK_SIZE)
    try:
        return stage_chunks(source)
    except FileTooLarge as exc:
        raise ValidationError({"file": str(exc)}) from exc


def _verify_staged(staged: StagedFile, disk_format: str, expected_sha256: str) -> Inspection:
    """Check the checksum and what the file is (no database work: inspection may take a while).

    Raises ValidationError (sha256 mismatch) or ImageRejected.
    """
    if expected_sha256 and staged.sha256 != expected_sha256:
        raise ValidationError(
            {"sha256": f"The file's sha256 is {staged.sha256}, not {expected_sha256}."}
        )
    return inspect_image(staged.path, disk_format)


def _install_staged(image: Image, staged: StagedFile, result: Inspection) -> Image:
    """Move the verified file into place as the (saved) image's file and mark it active."""
    final = store_root() / f"image-{image.id}-{staged.sha256[:12]}.{EXTENSIONS[image.disk_format]}"
    try:
        os.replace(staged.path, final)
        os.chmod(final, 0o640)
        image.file = final.name
        image.file_size = result.file_size
        image.virtual_size = result.virtual_size
        image.sha256 = staged.sha256
        image.status = Image.Status.ACTIVE
        image.error = ""
        image.save()
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return image


def image_upload(
    *,
    name: str,
    disk_format: str,
    user,
    fileobj=None,
    chunks: Iterable[bytes] | None = None,
    sha256: str | None = None,
    project: Project | None = None,
    visibility: str | None = None,
    os_type: str | None = None,
    min_disk_gib: int | None = None,
    min_ram_mib: int | None = None,
) -> Image:
    """Add an image from a file (an upload, any file-like object, or an iterable of bytes).

    The file is streamed into the store in 1 MiB chunks and hashed on the way; when the client
    gives a sha256 it must match. Rejections raise ValidationError and leave no file behind.
    """
    if (fileobj is None) == (chunks is None):
        raise ValueError("give exactly one of fileobj and chunks")
    try:
        expected = _normalize_sha256(sha256)
        image = _new_image(
            user=user,
            name=name,
            disk_format=disk_format,
            project=project,
            visibility=visibility,
            os_type=os_type,
            min_disk_gib=min_disk_gib,
            min_ram_mib=min_ram_mib,
        )
    except BaseException:
        _discard_upload(fileobj)
        raise
    staged = _stage(fileobj, chunks)
    try:
        result = _verify_staged(staged, image.disk_format, expected)
        with transaction.atomic():
            image.status = Image.Status.IMPORTING
            image.save()
            return _install_staged(image, staged, result)
    except ImageRejected as exc:
        raise ValidationError({"file": str(exc)}) from exc
    finally:
        staged.discard()  # a no-op once the file has been moved into place


def _discard_upload(fileobj) -> None:
    staged = getattr(fileobj, "staged", None)
    if isinstance(staged, StagedFile):
        staged.discard()


def image_import_from_url(
    *,
    name: str,
    disk_format: str,
    url: str,
    user,
    sha256: str | None = None,
    project: Project | None = None,
    visibility: str | None = None,
    os_type: str | None = None,
    min_disk_gib: int | None = None,
    min_ram_mib: int | None = None,
) -> tuple[Image, Job]:
    """Create a queued image and the job that downloads, verifies and inspects it.

    The URL is parsed strictly for everyone (see images.fetch); for tenants it must lead to
    public addresses only (no SSRF into the panel's networks). Only the URL rebuilt from the
    parsed fields is stored and fetched.
    """
    public_only = not is_admin(user)
    try:
        url = fetch.check_url(url, public_only=public_only).url
    except DownloadError as exc:
        raise ValidationError({"url": str(exc)}) from None
    expected = _normalize_sha256(sha256)
    image = _new_image(
        user=user,
        name=name,
        disk_format=disk_format,
        project=project,
        visibility=visibility,
        os_type=os_type,
        min_disk_gib=min_disk_gib,
        min_ram_mib=min_ram_mib,
        source_url=url,
    )
    with transaction.atomic():
        image.status = Image.Status.QUEUED
        image.save()
        job = job_create(
            kind=IMPORT_JOB,
            target_type="image",
            target_id=image.id,
            target_name=image.name,
            project=image.project,
            user=user,
            params={"url": url, "sha256": expected, "public_only": public_only},
        )
    return image, job


class _Throttle:
    def __init__(self, every: float):
        self.every = every
        self.last = 0.0

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            return True
        return False


def _mib(value: int) -> str:
    return f"{value / (1024 * 1024):.1f} MiB"


def _download(url: str, ctx, *, public_only: bool = False) -> StagedFile:
    """Stream the URL into the store; the address is checked again (DNS may have changed)."""
    limit = max_file_size()
    with fetch.open_url(url, public_only=public_only) as response:
        if response.status != 200:
            raise DownloadError(f"{url} answered HTTP {response.status} {response.reason}.")
        try:
            total = int(response.getheader("Content-Length") or 0)
        except ValueError:
            total = 0
        if total > limit:
            raise DownloadError(
                f"The file is {total} bytes, larger than the limit of {limit} bytes."
            )
        throttle = _Throttle(PROGRESS_EVERY)
        done = 0

        def chunks():
            nonlocal done
            while True:
                try:
                    chunk = response.read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(f"The download from {url} failed: {exc}") from exc
                if not chunk:
                    return
                done += len(chunk)
                yield chunk
                if ctx is not None and throttle.due():
                    of = f" of {_mib(total)}" if total else ""
                    pct = min(90, done * 90 // total) if total else 0
                    ctx.progress(pct, f"Downloading: {_mib(done)}{of}", public=True)

        try:
            staged = stage_chunks(chunks(), limit)
        except FileTooLarge as exc:
            raise DownloadError(str(exc)) from exc
    if total and staged.size != total:
        staged.discard()
        raise DownloadError(f"The download ended after {staged.size} of {total} bytes.")
    return staged


def image_run_import(
    *, image: Image, url: str, sha256: str = "", public_only: bool = False, ctx=None
) -> Image:
    """The import job's work: download, verify, inspect, accept.

    On failure the image is marked error and JobFailed (or JobCancelled) is raised.
    """
    Image.objects.filter(pk=image.pk).update(status=Image.Status.IMPORTING, error="")
    image.refresh_from_db()
    staged = None
    try:
        if ctx is not None:
            # The importer's own URL and image: fit for tenants (image.error shows the same).
            ctx.progress(0, f"Downloading {url}", public=True)
        staged = _download(url, ctx, public_only=public_only)
        if ctx is not None:
            ctx.progress(92, "Verifying and inspecting the image", public=True)
        result = _verify_staged(staged, image.disk_format, sha256)
        return _install_staged(image, staged, result)
    except ValidationError as exc:
        message = " ".join(m for msgs in exc.message_dict.values() for m in msgs)
        _mark_image_error(image, message)
        raise JobFailed(message, public=True) from exc
    except (ImageRejected, DownloadError) as exc:
        _mark_image_error(image, str(exc))
        raise JobFailed(str(exc), public=True) from exc
    except BaseException as exc:
        _mark_image_error(image, _describe(exc, "The import"))
        raise
    finally:
        if staged is not None:
            staged.discard()


def _describe(exc: BaseException, what: str) -> str:
    if exc.__class__.__name__ == "JobCancelled":
        return f"{what} was cancelled."
    return str(exc) or exc.__class__.__name__


def _mark_image_error(image: Image, message: str) -> None:
    Image.objects.filter(pk=image.pk).update(
        status=Image.Status.ERROR, error=message[:4000], updated_at=timezone.now()
    )
    image.status, image.error = Image.Status.ERROR, message


# ---------------------------------------------------------------- changing, deleting

_UPDATABLE = {"name", "os_type", "min_disk_gib", "min_ram_mib", "visibility", "project"}


def image_update(*, image: Image, user, **fields) -> Image:
    """Change an image's metadata (its file and sizes never change)."""
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValidationError({f: "This field cannot be changed." for f in sorted(unknown)})
    if not can_manage_image(user, image):
        raise PermissionDenied("You may not change this image.")
    if fields.get("visibility") == Image.Visibility.PUBLIC and not is_admin(user):
        raise PermissionDenied("Only administrators can make images public.")
    project = fields.get("project")
    if project is not None and project != image.project and not can_act(user, project):
        raise PermissionDenied(f"You may not move images into project {project.name}.")
    for field, value in fields.items():
        setattr(image, field, value)
    image.full_clean()
    image.save()
    return image


def image_delete(*, image: Image, user) -> list[str]:
    """Delete the image, its file and its copies on hosts; returns problems met on hosts.

    Refused (Conflict) while an instance uses it or a job is working on it.
    """
    if not can_manage_image(user, image):
        raise PermissionDenied("You may not delete this image.")
    used = image.instances.count()
    if used:
        raise Conflict(f"Image {image.name} is used by {used} instance(s); delete them first.")
    busy = Job.objects.filter(target_type="image", target_id=image.id, status__in=Job.ACTIVE)
    if busy.exists():
        raise Conflict(f"Image {image.name} has a job running; wait for it or cancel it.")
    replicas = [(r.host, r.pool, r.volume) for r in image.replicas.select_related("host")]
    file = image.file
    try:
        image.delete()
    except ProtectedError as exc:
        raise Conflict(f"Image {image.name} is in use; it cannot be deleted.") from exc
    if file:
        with contextlib.suppress(ValueError):
            image_path(file).unlink(missing_ok=True)
    problems = []
    for host, pool, volume in replicas:
        try:
            storage.delete_volume(connection_uri(host), pool, volume)
        except virt.VirtError as exc:
            log.warning("could not delete volume %s on %s/%s: %s", volume, host, pool, exc)
            problems.append(f"{host.name}/{pool}/{volume}: {exc}")
    return problems


# ---------------------------------------------------------------- copies on hosts


def replica_volume_name(image: Image) -> str:
    """image-<id>-<sha256[:12]>.<ext>: the content is in the name, so a copy is recognisable."""
    return f"image-{image.id}-{image.sha256[:12]}.{EXTENSIONS[image.disk_format]}"


def image_mirror(*, image: Image, host: Host, pool: str = "default", user) -> Job:
    """Start a job that copies the image into a host's storage pool (a no-op if it is there)."""
    if not is_admin(user):
        raise PermissionDenied("Only administrators can copy images to hosts.")
    if image.status != Image.Status.ACTIVE:
        raise Conflict(f"Image {image.name} is {image.status}, not active; it cannot be copied.")
    pool = (pool or "").strip()
    if not pool or len(pool) > 128:
        raise ValidationError({"pool": "Give the name of a storage pool on the host."})
    running = (
        Job.objects.filter(
            kind=MIRROR_JOB,
            target_type="image",
            target_id=image.id,
            status__in=Job.ACTIVE,
            params__host=host.id,
            params__pool=pool,
        )
        .order_by("created_at")
        .first()
    )
    if running is not None:
        raise JobConflict(running)
    with transaction.atomic():
        return job_create(
            kind=MIRROR_JOB,
            target_type="image",
            target_id=image.id,
            target_name=image.name,
            project=image.project,
            user=user,
            params={"host": host.id, "host_name": host.name, "pool": pool},
            exclusive=False,  # copies to several hosts may run side by side
        )


def _claim_replica(image: Image, host: Host, pool: str, volume: str):
    """(replica, claimed): claimed means this caller must copy; otherwise it is usable."""
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
    pool: str = "default",
    ctx=None,
    progress_range: tuple[int, int] | None = None,
    wait_timeout: float = 3600.0,
) -> ImageReplica:
    """Make sure the image is in `pool` on `host` and return its active replica.

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
    progress_throttle = _Throttle(PROGRESS_EVERY)
    heartbeat = _Throttle(REPLICA_HEARTBEAT)

    def report(done: int, total: int) -> None:
        if heartbeat.due():
            ImageReplica.objects.filter(pk=replica.pk).update(updated_at=timezone.now())
        if ctx is not None and progress_throttle.due(force=done >= total):
            step = f"Copying {image.name} to {where}: {_mib(done)} of {_mib(total)}"
            _report(ctx, progress_range, done / max(total, 1), step)

    try:
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
            error=_describe(exc, "The copy")[:4000],
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
