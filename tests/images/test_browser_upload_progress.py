"""The upload progress bar shows the upload's progress while it runs, not only its end.

The page sets the bar to 0 when the upload starts and to 100 when the last byte is sent;
only the XHR upload's progress events set the values between. Over loopback a whole file is
sent in a moment, so the browser's own network throttling (DevTools protocol) holds the
upload to a few seconds: the bar must then take several values between 0 and 100.
"""

from __future__ import annotations

import os
import re

import pytest

from images.models import Image

from ..conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024
FILE_MIB = 24
UPLOAD_BYTES_PER_SECOND = 8 * MIB  # about three seconds for the file

# Records every value the progress bar takes, across the navigation that follows the upload.
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
def page(live_server, admin_user, page):
    """The shared page (tests/conftest.py), signed in as the admin."""
    browser_login(page, live_server.url)
    return page


def test_the_progress_bar_moves_while_the_file_uploads(page, live_server, tmp_path):
    from playwright.sync_api import expect

    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as fh:  # data at both ends, a hole between
        fh.write(os.urandom(4 * MIB))
        fh.seek((FILE_MIB - 4) * MIB)
        fh.write(os.urandom(4 * MIB))

    page.goto(f"{live_server.url}/images/")
    expect(page.locator("h1")).to_have_text("Images")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": UPLOAD_BYTES_PER_SECOND,
        },
    )
    page.evaluate(RECORD_PROGRESS)
    page.fill("#upload_name", "throttled-disk")
    page.select_option("#upload_disk_format", "raw")
    page.set_input_files("#upload_file", str(disk))
    page.get_by_role("button", name="Upload", exact=True).click()

    expect(page).to_have_url(re.compile(r"/images/\d+/$"), timeout=120000)
    expect(page.locator("h1 .image-status")).to_have_text("Active")
    seen = page.evaluate("JSON.parse(sessionStorage.getItem('progress') || '[]')")
    between = sorted(set(value for value in seen if 0 < value < 100))
    assert len(between) >= 3, seen  # the bar moved during the upload
    assert seen == sorted(seen) and seen[-1] == 100, seen
    assert Image.objects.get().file_size == disk.stat().st_size
    assert page.js_errors == []
