"""Import from an http(s) URL as a job: a real HTTP server on 127.0.0.1 serves the files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudpanel.jobs.models import Job
from images.models import Image

from .conftest import qemu_img, run_job, store_files

pytestmark = pytest.mark.django_db

URL = "/api/v1/images/"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web(tmp_path):
    """An HTTP server in a thread serving tmp_path/www; yields (directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served_qcow2(web):
    root, base = web
    path = root / "cloud.qcow2"
    qemu_img("create", "-f", "qcow2", str(path), "256M")
    return path, f"{base}/cloud.qcow2"


def start_import(client, url, **fields):
    payload = {"name": "imported", "disk_format": "qcow2", "url": url, **fields}
    return client.post(URL, payload, format="json")


def test_import_runs_as_a_job_with_progress(api_client, served_qcow2):
    path, url = served_qcow2
    response = start_import(api_client, url, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["kind"] == "image.import" and body["status"] == "pending"
    assert response["Location"] == f"http://testserver/api/v1/jobs/{body['id']}/"
    image = Image.objects.get(pk=body["image"])
    assert image.status == "queued" and image.source_url == url

    job = run_job(body["id"])
    assert job.status == "succeeded", (job.error, job.log)
    assert job.progress == 100
    assert "Downloading" in job.log and "inspecting" in job.log
    image.refresh_from_db()
    assert image.status == "active"
    assert image.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert image.virtual_size == 256 * 1024 * 1024
    assert image.file_size == path.stat().st_size
    assert [p.name for p in store_files()] == [image.file]
    assert job.result["image"] == image.id
    # Pollers see the same through the jobs API.
    polled = api_client.get(f"/api/v1/jobs/{job.id}/").json()
    assert polled["status"] == "succeeded" and polled["target"]["id"] == image.id


def test_import_sha256_mismatch_fails_and_leaves_no_file(api_client, served_qcow2):
    _path, url = served_qcow2
    body = start_import(api_client, url, sha256="1" * 64).json()
    job = run_job(body["id"])
    assert job.status == "failed"
    assert "sha256" in job.error
    image = Image.objects.get(pk=body["image"])
    assert image.status == "error" and "sha256" in image.error
    assert store_files() == []


def test_import_http_error(api_client, web):
    _root, base = web
    body = start_import(api_client, f"{base}/missing.qcow2").json()
    job = run_job(body["id"])
    assert job.status == "failed"
    assert "HTTP 404" in job.error
    assert Image.objects.get(pk=body["image"]).status == "error"
    assert store_files() == []


def test_import_refused_when_nothing_listens(api_client):
    body = start_import(api_client, "http://127.0.0.1:9/nothing.qcow2").json()
    job = run_job(body["id"])
    assert job.status == "failed"
    assert "Could not fetch" in job.error


def test_import_of_an_image_with_backing_file_is_rejected(api_client, web, backing_qcow2):
    root, base = web
    shutil.copy(backing_qcow2, root / "evil.qcow2")
    body = start_import(api_client, f"{base}/evil.qcow2").json()
    job = run_job(body["id"])
    assert job.status == "failed"
    assert "backing file" in job.error
    assert store_files() == []


def test_import_format_mismatch(api_client, served_qcow2):
    _path, url = served_qcow2
    body = start_import(api_client, url, disk_format="raw").json()
    job = run_job(body["id"])
    assert job.status == "failed"
    assert "declared raw but it is qcow2" in job.error
    assert store_files() == []


def test_import_size_limit_from_content_length(api_client, served_qcow2, settings):
    _path, url = served_qcow2
    settings.IMAGE_MAX_FILE_SIZE = 1024
    body = start_import(api_client, url).json()
    job = run_job(body["id"])
    assert job.status == "failed"
    assert "larger than the limit" in job.error
    assert store_files() == []


class _NoLengthHandler(_QuietHandler):
    """Sends the file without a Content-Length: the end is when the connection closes."""

    def send_header(self, keyword, value):
        if keyword.lower() != "content-length":
            super().send_header(keyword, value)


@pytest.fixture
def web_without_length(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_NoLengthHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_import_without_content_length(api_client, web_without_length):
    root, base = web_without_length
    qemu_img("create", "-f", "qcow2", str(root / "cloud.qcow2"), "64M")
    job = run_job(start_import(api_client, f"{base}/cloud.qcow2").json()["id"])
    assert job.status == "succeeded", job.error
    assert Image.objects.get().file_size == (root / "cloud.qcow2").stat().st_size


def test_import_size_limit_while_streaming(api_client, web_without_length, settings):
    """A server that sends no (or a false) Content-Length is still cut off at the limit."""
    root, base = web_without_length
    qemu_img("create", "-f", "raw", str(root / "big.raw"), "1M")
    settings.IMAGE_MAX_FILE_SIZE = 100 * 1024
    job = run_job(start_import(api_client, f"{base}/big.raw", disk_format="raw").json()["id"])
    assert job.status == "failed"
    assert "larger than the limit" in job.error
    assert store_files() == []


def test_import_of_a_truncated_qcow2_fails_with_the_checks_message(api_client, web):
    root, base = web
    path = root / "cut.qcow2"
    qemu_img("create", "-f", "qcow2", str(path), "64M")
    subprocess.run(
        ["qemu-io", "-c", "write -P 0x5a 0 8M", str(path)], check=True, capture_output=True
    )
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    body = start_import(api_client, f"{base}/cut.qcow2").json()
    job = run_job(body["id"])
    assert job.status == "failed"
    assert "qemu-img check found" in job.error and "corruption" in job.error
    image = Image.objects.get(pk=body["image"])
    assert image.status == "error" and "qemu-img check found" in image.error
    assert store_files() == []


def test_cancelled_import_marks_the_image(api_client, served_qcow2, monkeypatch):
    from cloudpanel.jobs import services as job_services

    _path, url = served_qcow2
    body = start_import(api_client, url).json()
    # Someone cancels while it runs: the handler notices at its first progress report.
    monkeypatch.setattr(job_services.JobContext, "cancelled", lambda self: True)
    job = run_job(body["id"])
    assert job.status == "cancelled"
    image = Image.objects.get(pk=body["image"])
    assert image.status == "error" and "cancelled" in image.error
    assert store_files() == []


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x.qcow2", "file:///etc/passwd", "not a url", "gopher://x/y"]
)
def test_only_http_urls(api_client, url):
    response = start_import(api_client, url)
    assert response.status_code == 400
    assert "url" in response.json()["errors"]
    assert not Image.objects.exists() and not Job.objects.exists()


def test_member_imports_into_own_project(member_client, project_a, served_qcow2, monkeypatch):
    from images import fetch

    # The served file is on loopback; stand in for a public address for this member.
    monkeypatch.setattr(fetch, "internal_reason", lambda ip: None)
    _path, url = served_qcow2
    response = start_import(member_client, url)
    assert response.status_code == 202, response.content
    image = Image.objects.get(pk=response.json()["image"])
    assert image.project == project_a and image.visibility == "project"
    job = Job.objects.get(pk=response.json()["id"])
    assert job.project == project_a
    assert member_client.get(f"/api/v1/jobs/{job.id}/").status_code == 200


def test_members_may_not_import_from_internal_addresses(member_client, served_qcow2):
    """A tenant must not make the panel fetch from its own networks (SSRF)."""
    _, url = served_qcow2
    for target in (url, "http://localhost/x.qcow2", "http://169.254.169.254/latest/"):
        response = start_import(member_client, target)
        assert response.status_code == 400, target
        assert "only administrators" in response.json()["errors"]["url"][0]
    assert not Image.objects.exists()


def test_admin_may_import_from_a_single_label_host_name(api_client):
    # An internal mirror such as http://mirror/ is a normal admin source; only the strict
    # parser that the download uses decides (the job is not run: no name is looked up).
    response = api_client.post(
        URL,
        {"name": "from-mirror", "disk_format": "raw", "url": "http://mirror/disk.img"},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert Image.objects.get(name="from-mirror").source_url == "http://mirror/disk.img"
