"""A big upload streams to disk: the process's memory does not grow with the file's size.

The request body is generated on the fly and fed to the real WSGI handler, so nothing holds
the whole body in memory, neither the client side (Django's test client would) nor the server
side (which is what this measures).
"""

from __future__ import annotations

import io
import tracemalloc

import pytest
from django.test.client import ClientHandler, RequestFactory

from images.models import Image
from tests.conftest import api_token_for

from .conftest import store_files

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024
SIZE = 200 * MIB
BOUNDARY = "----cloudpanel-memory-test"
ZERO_200_MIB_SHA256 = "72abf2ca8f36943ebe2e49ca3a51d409ca5f0bfcffab6c9d25643c17c32889da"


class MultipartBody(io.RawIOBase):
    """multipart/form-data with a few fields and a file of `size` zero bytes, made lazily."""

    def __init__(self, fields: dict[str, str], size: int):
        head = b"".join(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        head += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.raw"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        self.parts = [head, None, f"\r\n--{BOUNDARY}--\r\n".encode()]
        self.file_left = size
        self.length = len(head) + size + len(self.parts[2])
        self.zeros = bytes(MIB)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while self.parts:
            part = self.parts[0]
            if part is None:
                if self.file_left:
                    size = min(n if n and n > 0 else MIB, MIB, self.file_left)
                    self.file_left -= size
                    return self.zeros[:size]
                self.parts.pop(0)
                continue
            if not part:
                self.parts.pop(0)
                continue
            take = part if n is None or n < 0 else part[:n]
            self.parts[0] = part[len(take) :]
            return take
        return b""


def _vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


def _environ(token: str, name: str, size: int) -> dict:
    body = MultipartBody({"name": name, "disk_format": "raw"}, size)
    return RequestFactory()._base_environ(
        PATH_INFO="/api/v1/images/",
        REQUEST_METHOD="POST",
        CONTENT_TYPE=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=str(body.length),
        HTTP_AUTHORIZATION=f"Bearer {token}",
        **{"wsgi.input": body},
    )


def test_200_mib_upload_keeps_memory_bounded(admin_user, record_property):
    token = api_token_for(admin_user)
    # The test client's handler (real WSGIRequest, middleware, views) minus its DB resets.
    handler = ClientHandler()
    # A small upload first, so that lazy imports and first-request set-up are not counted.
    assert handler(_environ(token, "warm-up", MIB)).status_code == 201
    environ = _environ(token, "big-zero-disk", SIZE)
    rss_reset = _reset_hwm()
    rss_before = _vm_hwm_kib()
    tracemalloc.start()
    try:
        response = handler(environ)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_after = _vm_hwm_kib()

    assert response.status_code == 201, response.content
    image = Image.objects.get(name="big-zero-disk")
    assert image.file_size == SIZE and image.virtual_size == SIZE
    assert image.sha256 == ZERO_200_MIB_SHA256
    files = store_files()
    assert image.file in [p.name for p in files] and len(files) == 2
    assert (files[0].parent / image.file).stat().st_size == SIZE

    print(f"\ntracemalloc peak during a {SIZE // MIB} MiB upload: {peak / MIB:.2f} MiB")
    record_property("tracemalloc_peak_mib", round(peak / MIB, 2))
    if rss_reset and rss_before and rss_after:
        growth = (rss_after - rss_before) / 1024
        print(f"peak RSS growth: {growth:.1f} MiB")
        record_property("rss_peak_growth_mib", round(growth, 1))
        assert growth < 64
    assert peak < 32 * MIB


def test_200_mib_upload_through_asgi_keeps_memory_bounded(admin_user, record_property):
    """The same through Django's ASGI handler, which uvicorn runs in production.

    That handler first spools the body into a SpooledTemporaryFile (in memory only up to
    FILE_UPLOAD_MAX_MEMORY_SIZE, then on disk in TMPDIR); the upload handler then streams it
    into the store. Memory stays bounded either way.
    """
    import asyncio

    from asgiref.sync import async_to_sync
    from django.core.handlers.asgi import ASGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    token = api_token_for(admin_user)
    app = ASGIHandler()

    async def call(name: str, size: int) -> int:
        body = MultipartBody({"name": name, "disk_format": "raw"}, size)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/images/",
            "raw_path": b"/api/v1/images/",
            "root_path": "",
            "query_string": b"",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
                (b"content-length", str(body.length).encode()),
                (b"authorization", f"Bearer {token}".encode()),
            ],
        }
        finished = asyncio.Event()
        status = {}

        async def receive():
            chunk = body.read(MIB) if not finished.is_set() else b""
            if chunk:
                return {"type": "http.request", "body": chunk, "more_body": True}
            if not status.get("body_done"):
                status["body_done"] = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await finished.wait()  # the client stays connected until the answer is sent
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif not message.get("more_body"):
                finished.set()

        await app(scope, receive, send)
        return status["code"]

    # The test's database connection must survive the request signals, as in the test client.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        assert async_to_sync(call)("warm-up", MIB) == 201
        _reset_hwm()
        rss_before = _vm_hwm_kib()
        tracemalloc.start()
        try:
            code = async_to_sync(call)("big-asgi", SIZE)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        rss_after = _vm_hwm_kib()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)

    assert code == 201
    image = Image.objects.get(name="big-asgi")
    assert image.file_size == SIZE and image.sha256 == ZERO_200_MIB_SHA256
    print(f"\nASGI: tracemalloc peak during a {SIZE // MIB} MiB upload: {peak / MIB:.2f} MiB")
    record_property("asgi_tracemalloc_peak_mib", round(peak / MIB, 2))
    if rss_before and rss_after:
        print(f"ASGI: peak RSS growth: {(rss_after - rss_before) / 1024:.1f} MiB")
    assert peak < 32 * MIB


class BrokenBody(MultipartBody):
    """The client goes away after `cut` bytes of the body."""

    def __init__(self, *args, cut: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.left = cut

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError("connection reset by peer")
        data = super().read(min(n, self.left) if n and n > 0 else self.left)
        self.left -= len(data)
        return data


def test_client_gone_mid_upload_leaves_no_partial_file(admin_user):
    import gc

    token = api_token_for(admin_user)
    body = BrokenBody({"name": "cut", "disk_format": "raw"}, 20 * MIB, cut=5 * MIB)
    environ = RequestFactory()._base_environ(
        PATH_INFO="/api/v1/images/",
        REQUEST_METHOD="POST",
        CONTENT_TYPE=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=str(body.length),
        HTTP_AUTHORIZATION=f"Bearer {token}",
        **{"wsgi.input": body},
    )
    response = ClientHandler()(environ)
    assert response.status_code == 400  # not a 500: nothing a client sends may cause one
    gc.collect()
    assert store_files() == []
    assert not Image.objects.exists()


def test_client_gone_mid_upload_in_the_browser_form(admin_user):
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    browser = Client()
    browser.force_login(admin_user)
    session = browser.cookies["sessionid"].value
    csrf = _get_new_csrf_string()  # as the page's cookie and the script's X-CSRFToken header
    body = BrokenBody({"name": "cut", "disk_format": "raw"}, 20 * MIB, cut=5 * MIB)
    environ = RequestFactory()._base_environ(
        PATH_INFO="/images/upload/",
        REQUEST_METHOD="POST",
        CONTENT_TYPE=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=str(body.length),
        HTTP_COOKIE=f"sessionid={session}; csrftoken={csrf}",
        HTTP_X_CSRFTOKEN=csrf,
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
        **{"wsgi.input": body},
    )
    response = ClientHandler()(environ)
    assert response.status_code == 400
    assert store_files() == []
