"""Headless Chromium uploads an image through the page: progress bar, then the detail page."""

from __future__ import annotations

import os
import re

import pytest

from images.models import Image

from ..conftest import browser_login, shot
from .conftest import store_files

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Records every value the progress bar shows, across the navigation that follows the upload.
RECORD_PROGRESS = """
() => {
  const bar = document.querySelector('[data-upload-bar]');
  new MutationObserver(() => {
    const seen = JSON.parse(sessionStorage.getItem('progress') || '[]');
    seen.push(Number(bar.getAttribute('aria-valuenow')));
    sessionStorage.setItem('progress', JSON.stringify(seen));
  }).observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
}
"""


@pytest.fixture
def browser_viewport() -> dict:
    return {"width": 1440, "height": 1000}


@pytest.fixture
def page(live_server, admin_user, page):
    """The shared page (tests/conftest.py), signed in as the admin."""
    browser_login(page, live_server.url)
    return page


def test_upload_with_progress_bar(page, live_server, tmp_path, default_project):
    from playwright.sync_api import expect

    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as fh:  # 48 MiB with data at both ends, holes between
        fh.write(os.urandom(4 * 1024 * 1024))
        fh.seek(44 * 1024 * 1024)
        fh.write(os.urandom(4 * 1024 * 1024))

    page.goto(f"{live_server.url}/images/")
    expect(page.locator("h1")).to_have_text("Images")
    page.evaluate(RECORD_PROGRESS)
    page.fill("#upload_name", "browser-disk")
    page.select_option("#upload_disk_format", "raw")
    page.set_input_files("#upload_file", str(disk))
    page.get_by_role("button", name="Upload", exact=True).click()

    expect(page).to_have_url(re.compile(r"/images/\d+/$"), timeout=60000)
    expect(page.locator("h1")).to_contain_text("browser-disk")
    expect(page.locator("h1 .image-status")).to_have_text("Active")
    seen = page.evaluate("JSON.parse(sessionStorage.getItem('progress') || '[]')")
    assert seen and seen[-1] == 100, seen
    assert seen == sorted(seen)
    shot(page, "image-detail")

    image = Image.objects.get()
    assert image.file_size == disk.stat().st_size and image.disk_format == "raw"
    assert page.js_errors == []


def test_rejected_upload_shows_the_reason(page, live_server, backing_qcow2):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/images/")
    page.fill("#upload_name", "evil")
    page.set_input_files("#upload_file", str(backing_qcow2))
    page.get_by_role("button", name="Upload", exact=True).click()
    errors = page.locator('[data-errors-for="file"]')
    expect(errors).to_contain_text("backing file")
    expect(page).to_have_url(f"{live_server.url}/images/")
    shot(page, "image-upload-error")
    assert not Image.objects.exists() and store_files() == []
    assert page.js_errors == []
