"""A Django upload handler that streams the 'file' field straight into the image store.

Django's default handlers keep small files in memory and copy big ones to /tmp; this one
writes every chunk into IMAGE_STORE/.incoming while hashing it, so a 2 GiB upload costs a few
MiB of memory, the sha256 is known when the body ends, and accepting the image is a rename.
Install it before anything reads the body (see install_image_upload_handler).
"""

from __future__ import annotations

import weakref

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopUpload

from .store import CHUNK_SIZE, FileTooLarge, StagedFile, StagingWriter

FIELD_NAME = "file"


class StagedUploadedFile(UploadedFile):
    """The uploaded file, already in the store. Closing it removes it unless it was accepted."""

    def __init__(self, staged: StagedFile, name: str, content_type: str, charset: str | None):
        self.staged = staged
        self.sha256 = staged.sha256
        fh = open(staged.path, "rb")  # noqa: SIM115 - closed by close() below
        super().__init__(fh, name, content_type, staged.size, charset)
        # Also when the request fails before anyone closes it (a later part is malformed).
        weakref.finalize(self, staged.discard)

    def temporary_file_path(self) -> str:
        return str(self.staged.path)

    def close(self):
        try:
            return super().close()
        finally:
            self.staged.discard()  # a no-op once the file has been moved into place


class ImageUploadHandler(FileUploadHandler):
    chunk_size = CHUNK_SIZE

    def __init__(self, request=None, field_name: str = FIELD_NAME):
        super().__init__(request)
        self.field_name_wanted = field_name
        self.writer: StagingWriter | None = None
        self.received = False
        self.error: str | None = None

    def new_file(self, field_name, *args, **kwargs):
        super().new_file(field_name, *args, **kwargs)
        if field_name != self.field_name_wanted or self.received:
            raise SkipFile()  # only one image per request; other file fields are ignored
        self.writer = StagingWriter()

    def receive_data_chunk(self, raw_data, start):
        if self.writer is None:
            return None
        try:
            self.writer.write(raw_data)
        except FileTooLarge as exc:
            self.writer = None
            self.error = str(exc)
            raise StopUpload(connection_reset=False) from exc  # read the rest, answer 400
        return None

    def file_complete(self, file_size):
        if self.writer is None:
            return None
        staged = self.writer.finish()
        self.writer = None
        self.received = True
        return StagedUploadedFile(staged, self.file_name, self.content_type, self.charset)

    def upload_interrupted(self):
        if self.writer is not None:
            self.writer.discard()
            self.writer = None


def install_image_upload_handler(request) -> ImageUploadHandler:
    """Replace the request's upload handlers (a Django HttpRequest, before its body is read)."""
    handler = ImageUploadHandler(request)
    request.upload_handlers = [handler]
    request._image_upload_handler = handler
    return handler


def discard_incomplete_upload(request) -> None:
    """Remove a file whose body never finished (the client went away); a no-op otherwise."""
    handler = getattr(request, "_image_upload_handler", None)
    if handler is not None:
        handler.upload_interrupted()


def upload_error(request) -> str | None:
    handler = getattr(request, "_image_upload_handler", None)
    return handler.error if handler else None
