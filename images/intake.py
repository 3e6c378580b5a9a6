"""Image intake: how a file becomes an image (an upload, or a URL import run as a job).

Every way in ends the same way: check the sha256, inspect the file with qemu-img, move it into
the store (a rename). A rejected file never stays on disk. Who may add which image is the
catalogue's rule (images.catalogue.new_image).
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from cloudpanel.audit.decorators import audited
from cloudpanel.errors import InvalidInput
from cloudpanel.jobs.services import JobFailed

from . import fetch
from .catalogue import new_image
from .fetch import DownloadError
from .inspect import ImageRejected, Inspection, inspect_image
from .models import Image
from .progress import PROGRESS_EVERY, Throttle, describe_failure, mib
from .store import (
    CHUNK_SIZE,
    EXTENSIONS,
    FileTooLarge,
    StagedFile,
    incoming_dir,
    max_file_size,
    read_chunks,
    stage_chunks,
    store_root,
)

SHA256_CHARS = set("0123456789abcdef")


def normalize_sha256(value: str | None) -> str:
    value = (value or "").strip().lower()
    if value and (len(value) != 64 or not set(value) <= SHA256_CHARS):
        raise InvalidInput({"sha256": "Give the sha256 as 64 hexadecimal characters."})
    return value


def _stage(fileobj, chunks: Iterable[bytes] | None) -> StagedFile:
    staged = getattr(fileobj, "staged", None)
    if isinstance(staged, StagedFile) and staged.path.parent == incoming_dir():
        return staged  # streamed into the store by ImageUploadHandler: no copy
    source = chunks if chunks is not None else read_chunks(fileobj, CHUNK_SIZE)
    try:
        return stage_chunks(source)
    except FileTooLarge as exc:
        raise InvalidInput({"file": str(exc)}) from exc


def _verify_staged(staged: StagedFile, disk_format: str, expected_sha256: str) -> Inspection:
    """Check the checksum and what the file is (no database work: inspection may take a while).

    Raises InvalidInput (sha256 mismatch) or ImageRejected.
    """
    if expected_sha256 and staged.sha256 != expected_sha256:
        raise InvalidInput(
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


@audited("image.upload", target_type="image", exclude=("chunks",))
def image_upload(
    *,
    user,
    fileobj=None,
    chunks: Iterable[bytes] | None = None,
    sha256: str | None = None,
    **fields,
) -> Image:
    """Add an image from a file (an upload, any file-like object, or an iterable of bytes);
    `fields` are new_image's (name, disk_format, project, visibility, metadata).

    The file is streamed into the store in 1 MiB chunks and hashed on the way; when the client
    gives a sha256 it must match. Rejections raise InvalidInput and leave no file behind.
    """
    if (fileobj is None) == (chunks is None):
        raise ValueError("give exactly one of fileobj and chunks")
    try:
        expected = normalize_sha256(sha256)
        image = new_image(user=user, **fields)
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
        raise InvalidInput({"file": str(exc)}) from exc
    finally:
        staged.discard()  # a no-op once the file has been moved into place


def _discard_upload(fileobj) -> None:
    staged = getattr(fileobj, "staged", None)
    if isinstance(staged, StagedFile):
        staged.discard()


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
        throttle = Throttle(PROGRESS_EVERY)
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
                    of = f" of {mib(total)}" if total else ""
                    pct = min(90, done * 90 // total) if total else 0
                    ctx.progress(pct, f"Downloading: {mib(done)}{of}", public=True)

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
    except InvalidInput as exc:
        message = " ".join(m for msgs in exc.message_dict.values() for m in msgs)
        _mark_image_error(image, message)
        raise JobFailed(message, public=True) from exc
    except (ImageRejected, DownloadError) as exc:
        _mark_image_error(image, str(exc))
        raise JobFailed(str(exc), public=True) from exc
    except BaseException as exc:
        _mark_image_error(image, describe_failure(exc, "The import"))
        raise
    finally:
        if staged is not None:
            staged.discard()


def _mark_image_error(image: Image, message: str) -> None:
    Image.objects.filter(pk=image.pk).update(
        status=Image.Status.ERROR, error=message[:4000], updated_at=timezone.now()
    )
    image.status, image.error = Image.Status.ERROR, message
