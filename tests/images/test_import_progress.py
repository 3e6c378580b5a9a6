"""A URL import's job reports how far the download is, not only that it started and ended.

Every saved state of the job is recorded (Django's post_save, whoever saves it): while the
file downloads the job's progress must take several increasing values on its way to the
verification step, as pollers and sockets see them.
"""

from __future__ import annotations

import random
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db.models.signals import post_save

from cloudpanel.jobs.models import Job
from images import intake

from .conftest import run_job

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served_raw(tmp_path):
    """A 12 MiB raw disk (a dozen download chunks) served over HTTP on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "disk.raw").write_bytes(random.Random(7).randbytes(12 * MIB))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/disk.raw"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def saved_progress():
    """(status, progress) of every save of a job, in order."""
    seen: list[tuple[str, int]] = []

    def record(sender, instance, **kwargs):
        seen.append((instance.status, instance.progress))

    post_save.connect(record, sender=Job, weak=False)
    try:
        yield seen
    finally:
        post_save.disconnect(record, sender=Job)


def test_the_import_job_reports_its_download_progress(
    api_client, served_raw, saved_progress, monkeypatch
):
    # A report per chunk instead of one a second, so a download over loopback shows them.
    monkeypatch.setattr(intake, "PROGRESS_EVERY", 0)
    response = api_client.post(
        "/api/v1/images/",
        {"name": "imported", "disk_format": "raw", "url": served_raw},
        format="json",
    )
    assert response.status_code == 202, response.content
    job = run_job(response.json()["id"])
    assert job.status == "succeeded", (job.error, job.log)

    running = [progress for status, progress in saved_progress if status == "running"]
    assert running == sorted(running), saved_progress
    downloading = sorted({p for p in running if 0 < p < 90})
    assert len(downloading) >= 3, saved_progress  # the bar moves during the download
    assert saved_progress[-1] == ("succeeded", 100)
