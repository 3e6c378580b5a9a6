"""Headless Chromium through the real login form to the hosts pages.

Runs against pytest-django's live_server (WSGI, so no WebSockets: the live indicator just
keeps retrying, which is fine here). In CI a missing Chromium is a failure, never a skip.
"""

from __future__ import annotations

import pytest

from ..conftest import browser_login, shot

# Playwright's sync API runs an event loop in this thread; the ORM calls made by fixtures
# and the test itself are still plain synchronous calls.

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_overview_hosts_detail(page, live_server, admin_user, test_host):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/hosts/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/hosts/")
    shot(page, "login")

    # Wrong password first: the form says so and stays on the login page.
    page.fill("#id_username", "root-admin")
    page.fill("#id_password", "nope")
    page.click("button[type=submit]")
    expect(page.locator(".alert-error")).to_be_visible()

    page.fill("#id_username", "root-admin")
    page.fill("#id_password", "pw-admin-123")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/hosts/")

    page.click("nav >> text=Overview")
    expect(page.locator("h1")).to_have_text("Cluster overview")
    expect(page.locator(".stat-value").first).to_have_text("1")
    expect(page.get_by_text("Cluster capacity")).to_be_visible()
    shot(page, "overview")

    page.click("nav >> text=Hosts")
    row = page.locator(f'tr[data-host-id="{test_host.pk}"]')
    expect(row).to_contain_text("demo")
    expect(row.locator(".status-online")).to_have_text("Online")
    expect(row.locator(".badge-tcg")).to_have_text("TCG")
    expect(page.locator("nav a.active")).to_contain_text("Hosts")
    shot(page, "hosts")

    row.get_by_role("link", name="demo").click()
    expect(page).to_have_url(f"{live_server.url}/hosts/{test_host.pk}/")
    expect(page.locator("h1")).to_contain_text("demo")
    expect(page.get_by_text("TCG only").first).to_be_visible()
    expect(page.get_by_role("cell", name="default-pool")).to_be_visible()
    shot(page, "host-detail")

    page.get_by_role("button", name="Refresh now").click()
    expect(page.locator(".alert-success")).to_contain_text("synced")

    # Logging out goes through the POST form in the user menu.
    page.click("details.usermenu summary")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server.url}/login/")
    assert page.js_errors == []


def test_add_host_form_in_browser(page, live_server, admin_user):
    from playwright.sync_api import expect

    browser_login(page, live_server.url)
    page.goto(f"{live_server.url}/hosts/new/")
    page.fill("#id_name", "broken")
    page.fill("#id_uri", "qemu:///nowhere")
    page.fill("#id_ssh_private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nBROWSER-SECRET\n")
    page.get_by_role("button", name="Add host").click()
    expect(page.locator("#id_uri_errors")).to_contain_text("/system or /session")
    expect(page.locator("#id_ssh_private_key")).to_have_value("")
    assert "BROWSER-SECRET" not in page.content()
    shot(page, "host-form")
    assert page.js_errors == []


# ---- live progress over a real WebSocket ------------------------------------------------


def _off_loop(fn):
    """Run fn in a plain thread: Playwright's loop owns this one, and async_to_sync refuses it."""
    import threading

    from django.db import connection

    errors: list[BaseException] = []

    def run():
        try:
            fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


@pytest.fixture
def busy_cluster(test_host, default_project, admin_user):
    """The demo host overcommitted on CPU and RAM, and jobs in every state."""
    from cloudpanel.jobs.models import Job
    from instances.models import Flavor, Instance

    type(test_host).objects.filter(pk=test_host.pk).update(ram_allocation_ratio="1.25")
    flavor = Flavor.objects.create(name="big", vcpus=8, ram_mib=1536, disk_gib=20)
    for i in range(3):
        Instance.objects.create(
            name=f"web-{i}",
            project=default_project,
            flavor=flavor,
            host=test_host,
            state="running",
        )

    def job(**fields):
        base = {
            "kind": "instance.create",
            "target_type": "instance",
            "project": default_project,
            "requested_by": admin_user,
        }
        return Job.objects.create(**{**base, **fields})

    return {
        "running": job(
            target_id=1,
            target_name="web-0",
            status="running",
            progress=35,
            step="copying base image",
            log="10:00:00 defining domain\n",
        ),
        "pending": job(target_id=2, target_name="web-1", status="pending"),
        "done": job(
            kind="image.import",
            target_type="image",
            target_id=7,
            target_name="debian-12",
            status="succeeded",
            progress=100,
        ),
        "failed": job(
            kind="instance.migrate",
            target_id=3,
            target_name="web-2",
            status="failed",
            progress=60,
            error="target host refused the migration",
        ),
    }


def test_job_progress_is_live(page, asgi_url, busy_cluster):
    from playwright.sync_api import expect

    from cloudpanel.jobs.models import Job
    from cloudpanel.jobs.services import JobContext, broadcast

    running = busy_cluster["running"]
    browser_login(page, asgi_url)
    expect(page.locator("h1")).to_have_text("Cluster overview")
    expect(page.locator(".cap-danger").first).to_be_visible()  # RAM beyond its limit
    expect(page.locator(".cap-over").first).to_be_visible()
    expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "open")
    shot(page, "overview-busy")

    # The overview's rows follow /ws/jobs/.
    _off_loop(lambda: JobContext(Job.objects.get(pk=running.pk)).progress(50, "resizing disk"))
    row = page.locator(f'tr[data-job-id="{running.pk}"]')
    expect(row.locator("[data-job-progress]")).to_have_attribute("style", "width: 50%;")
    expect(row.locator("[data-job-step]")).to_have_text("resizing disk")

    page.goto(f"{asgi_url}/jobs/{running.pk}/")
    expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "open")
    _off_loop(lambda: JobContext(Job.objects.get(pk=running.pk)).progress(70, "starting guest"))
    root = page.locator(f'[data-job-id="{running.pk}"]').first
    expect(root.locator("[data-job-progress]")).to_have_attribute("style", "width: 70%;")
    expect(root.locator("[data-job-step]").first).to_have_text("starting guest")
    expect(page.locator("[data-job-log]")).to_contain_text("starting guest")  # log refetched
    shot(page, "job-running")

    def finish():
        Job.objects.filter(pk=running.pk).update(status="succeeded", progress=100)
        broadcast(Job.objects.get(pk=running.pk))

    _off_loop(finish)
    expect(root.locator("[data-job-status]").first).to_have_text("Succeeded")
    expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    assert page.js_errors == []


def test_cancel_button_and_jobs_list(page, asgi_url, busy_cluster):
    from playwright.sync_api import expect

    from cloudpanel.jobs.models import Job

    pending = busy_cluster["pending"]
    browser_login(page, asgi_url)
    page.goto(f"{asgi_url}/jobs/")
    expect(page.locator("tbody tr")).to_have_count(4)
    expect(page.locator(".job-failed")).to_have_text("Failed")
    shot(page, "jobs")

    page.goto(f"{asgi_url}/jobs/{pending.pk}/")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("[data-job-status]").first).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    assert Job.objects.get(pk=pending.pk).status == "cancelled"

    page.goto(f"{asgi_url}/jobs/?status=failed")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody")).to_contain_text("web-2")
    assert page.js_errors == []
