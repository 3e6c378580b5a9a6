"""The image store on the panel's disk: where files live, limits, and streaming writes.

Every incoming file (browser, API, URL import) is written chunk by chunk into a temporary file
under IMAGE_STORE/.incoming and hashed on the way, so memory stays bounded whatever the size
and accepting it is a rename on the same filesystem. Chunks of zeros become holes (a raw disk
image is mostly empty).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

GIB = 1024**3
CHUNK_SIZE = 1024 * 1024
_ZEROS = bytes(CHUNK_SIZE)

EXTENSIONS = {"qcow2": "qcow2", "raw": "raw", "iso": "iso"}


def store_root() -> Path:
    root = Path(settings.IMAGE_STORE)
    root.mkdir(parents=True, exist_ok=True)
    return root


def incoming_dir() -> Path:
    path = store_root() / ".incoming"
    path.mkdir(exist_ok=True)
    return path


def max_file_size() -> int:
    return int(getattr(settings, "IMAGE_MAX_FILE_SIZE", 100 * GIB))


def max_virtual_size() -> int:
    return int(getattr(settings, "IMAGE_MAX_VIRTUAL_SIZE", 2048 * GIB))


def image_path(relative: str) -> Path:
    """The absolute path of an Image.file value (always inside the store)."""
    root = store_root().resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError(f"image file {relative!r} is outside the image store")
    return path


class FileTooLarge(Exception):
    pass


@dataclass
class StagedFile:
    """A complete file in .incoming, with its size and sha256, not yet an image's file."""

    path: Path
    size: int
    sha256: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class StagingWriter:
    """Writes a stream of chunks to a temporary file in the store, hashing as it goes."""

    def __init__(self, limit: int | None = None):
        self.limit = max_file_size() if limit is None else limit
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=incoming_dir())
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        # A request that dies mid-body (client gone) never calls discard(): clean up on GC.
        self._cleanup = weakref.finalize(self, _remove, self._fh, self.path)

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.discard()
            raise FileTooLarge(
                f"The file is larger than the limit of {self.limit} bytes "
                f"({self.limit / GIB:g} GiB)."
            )
        self._hash.update(chunk)
        if len(chunk) <= CHUNK_SIZE and _ZEROS.startswith(chunk):
            self._fh.seek(len(chunk), os.SEEK_CUR)  # leave a hole
        else:
            self._fh.write(chunk)

    def finish(self) -> StagedFile:
        self._fh.truncate(self.size)  # a trailing hole still counts towards the size
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._cleanup.detach()
        return StagedFile(path=self.path, size=self.size, sha256=self._hash.hexdigest())

    def discard(self) -> None:
        self._cleanup()


def _remove(fh, path: Path) -> None:
    if not fh.closed:
        fh.close()
    path.unlink(missing_ok=True)


def stage_chunks(chunks, limit: int | None = None) -> StagedFile:
    """Write an iterable of bytes into the store; nothing is left behind on error."""
    writer = StagingWriter(limit)
    try:
        for chunk in chunks:
            writer.write(chunk)
        return writer.finish()
    except BaseException:
        writer.discard()
        raise


def read_chunks(fileobj, size: int = CHUNK_SIZE):
    """Iterate a file-like object (or Django File) in bounded chunks."""
    if hasattr(fileobj, "chunks"):
        yield from fileobj.chunks(size)
        return
    while chunk := fileobj.read(size):
        yield chunk


def sweep_incoming(max_age_seconds: float = 24 * 3600) -> list[str]:
    """Remove staged files a killed process left behind (an upload in flight is younger)."""
    import time

    removed = []
    cutoff = time.time() - max_age_seconds
    for path in incoming_dir().iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:
            continue  # finished or discarded meanwhile
    return removed
