"""The instance pages end to end, for real: Chromium against the ASGI app (uvicorn, so the
/ws/jobs/ WebSocket works), a real Celery worker process and a real libvirt lab host.

Every state the page shows is checked against libvirt itself (virsh).
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from ..conftest import browser_login, settle_page, shot
from ..instances.conftest import dom_state, domain_names, make_image

# Playwright's sync API runs an event loop in this thread; ORM calls stay synchronous.

pytestmark = [
    pytest.mark.browser,
    pytest.mark.libvirt,
    pytest.mark.django_db(transaction=True),
]

LIVE = 90_000  # ms: provisioning on the TCG-only host, through a real worker

# Reports what the instance page shows each time a job event has been applied to it.
_RECORD_JOB_EVENTS = """
document.addEventListener("cloudpanel:job", function (event) {
  var job = event.detail.job;
  var card = document.querySelector('[data-reload-on-finish][data-job-id="' + job.id + '"]');
  if (!card) return;
  function text(selector) {
    var el = card.querySelector(selector);
    return el ? el.textContent : null;
  }
  window.jobSeen({
    id: job.id,
    status: job.status,
    width: card.querySelector("[data-job-progress]").style.width,
    step: text("[data-job-step]"),
    badge: text("[data-job-status]")
  });
});
"""


def _state_badge(page):
    return page.locator("h1 [data-instance-state]")


def _power(page, button: str) -> None:
    page.get_by_role("button", name=button, exact=True).click()


def test_create_stop_start_delete_through_the_pages(
    page, asgi_url, live_worker, lab_hosts, admin_user, default_project, settings
):
    from playwright.sync_api import expect

    from cloudpanel.jobs.models import Job
    from instances.models import Instance
    from instances.services import flavor_create

    make_image(default_project, settings, name="tiny-img")
    flavor_create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    host = lab_hosts[1]  # TCG only

    seen: list[dict] = []
    page.expose_function("jobSeen", lambda event: seen.append(event))
    page.add_init_script(_RECORD_JOB_EVENTS)
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)

    browser_login(page, asgi_url)
    expect(page.locator("h1")).to_have_text("Cluster overview")
    page.click("nav >> text=Instances")
    expect(page).to_have_url(f"{asgi_url}/instances/")
    expect(page.locator(".empty")).to_contain_text("No instances yet")
    page.get_by_role("link", name="Create instance").first.click()
    expect(page.locator("h1")).to_have_text("Create instance")

    page.fill("#id_name", "web-flow")
    page.select_option("#id_image", label="tiny-img")
    page.select_option("#id_flavor", label="tiny")
    page.select_option("#id_host", label="lab1")
    shot(page, "instance-form")

    # Hold the worker until the detail page is open and live, so the whole job is watched.
    os.killpg(live_worker.pid, signal.SIGSTOP)
    try:
        page.get_by_role("button", name="Create", exact=True).click()
        expect(page).to_have_url(re.compile(rf"{re.escape(asgi_url)}/instances/\d+/$"))
        instance = Instance.objects.get(name="web-flow")
        job = instance.current_job
        assert job.kind == "instance.create" and instance.host_id == host.pk
        expect(page.locator(".alert-success")).to_contain_text(f"job {job.id}")
        card = page.locator(f'[data-reload-on-finish][data-job-id="{job.id}"]')
        expect(card.locator("[data-job-status]")).to_have_text("Pending")
        expect(card.locator("[data-job-progress]")).to_have_attribute("style", "width: 0%")
        expect(_state_badge(page)).to_have_text("Building")
        expect(card.locator("h2")).to_have_text("Current job: instance.create")
        expect(page.locator(".instance-actions button")).to_have_text(["Delete"])
        expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "open")
        shot(page, "instance-pending")
    finally:
        os.killpg(live_worker.pid, signal.SIGCONT)

    # The bar and the step move on without a reload: the server never renders this card for
    # a finished job, so "Succeeded" in it can only come from the WebSocket.
    expect(card.locator("[data-job-step]")).not_to_have_text("", timeout=LIVE)
    expect(card.locator("[data-job-status]")).to_have_text("Succeeded", timeout=LIVE)
    expect(card.locator("[data-job-progress]")).to_have_attribute("style", "width: 100%;")
    events = [e for e in seen if e["id"] == job.id]
    running = [e for e in events if e["status"] == "running"]
    assert running, events
    assert len({e["step"] for e in running}) >= 2, events  # several steps shown in turn
    assert any(e["width"] not in ("0%", "100%") for e in running), events
    assert all(e["badge"] == "Running" for e in running), events
    assert Job.objects.get(pk=job.pk).status == "succeeded"

    # The page then reloads by itself once, for the state the job left.
    expect(_state_badge(page)).to_have_text("Running", timeout=LIVE)
    expect(page.locator("[data-reload-on-finish]")).to_have_count(0)
    settle_page(page)  # the guest's tap came up during that reload
    assert dom_state(host, instance.domain_name) == "running"
    instance.refresh_from_db()
    assert instance.state == "running" and instance.current_job is None
    history = page.locator(f'tr[data-job-id="{job.id}"]')
    expect(history.locator("[data-job-status]")).to_have_text("Succeeded")
    shot(page, "instance-detail")

    page.click("nav >> text=Instances")
    row = page.locator(f'tr[data-instance-id="{instance.pk}"]')
    expect(row.locator("[data-instance-state]")).to_have_text("Running")
    expect(row).to_contain_text("lab1")
    expect(row).to_contain_text("1 vCPU · 64 MiB · 1 GiB")
    shot(page, "instance-list")
    row.get_by_role("link", name="web-flow").click()
    expect(page.locator("h1")).to_contain_text("web-flow")

    buttons = page.locator(".instance-actions button")
    expect(buttons).to_have_text(["Shutdown", "Stop", "Reboot", "Reset", "Suspend", "Delete"])
    _power(page, "Stop")
    expect(page.locator(".alert-success")).to_have_text("Stop requested.")
    expect(_state_badge(page)).to_have_text("Shut off", timeout=LIVE)
    assert dom_state(host, instance.domain_name) == "shut off"
    expect(page.locator("[data-reload-on-finish]")).to_have_count(0)
    settle_page(page)  # the guest's tap went away
    shot(page, "instance-shutoff")

    expect(buttons).to_have_text(["Start", "Delete"])
    _power(page, "Start")
    expect(page.locator(".alert-success")).to_have_text("Start requested.")
    expect(_state_badge(page)).to_have_text("Running", timeout=LIVE)
    assert dom_state(host, instance.domain_name) == "running"
    settle_page(page)

    _power(page, "Delete")
    expect(page).to_have_url(f"{asgi_url}/instances/")
    expect(page.locator(".alert-success")).to_have_text("Deleting web-flow.")
    assert dialogs == [
        "Stop web-flow? This pulls the plug: the guest gets no chance to shut down cleanly.",
        "Delete web-flow and its disks?",
    ]
    # The row stays while the delete job runs; the list reloads when it ends.
    expect(page.locator(f'tr[data-instance-id="{instance.pk}"]')).to_have_count(0, timeout=LIVE)
    expect(page.locator(".empty")).to_contain_text("No instances yet")
    assert not Instance.objects.filter(pk=instance.pk).exists()
    assert instance.domain_name not in domain_names(host)
    assert dom_state(host, instance.domain_name) is None
    assert page.js_errors == []


def test_member_sees_only_their_projects_instances(
    page, asgi_url, member_user, test_host, default_project
):
    from playwright.sync_api import expect

    from cloudpanel.projects.models import Membership, Project
    from instances.models import Flavor, Instance

    project_a = Project.objects.create(name="project-a")
    project_b = Project.objects.create(name="project-b")
    Membership.objects.create(user=member_user, project=project_a)
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)

    def make(name, project):
        return Instance.objects.create(
            name=name, project=project, flavor=flavor, host=test_host, state="running"
        )

    mine = make("a-web", project_a)
    theirs = make("b-db", project_b)
    make("default-vm", default_project)

    page.goto(f"{asgi_url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-alice-123")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_be_visible()
    page.wait_for_url("**/portal/")  # tenants land in the portal; the console is a link away

    page.goto(f"{asgi_url}/")
    page.click("nav >> text=Instances")
    expect(page.locator("tbody tr")).to_have_count(1)
    row = page.locator(f'tr[data-instance-id="{mine.pk}"]')
    expect(row).to_contain_text("a-web")
    expect(row).to_contain_text("project-a")
    expect(page.get_by_text("b-db")).to_have_count(0)
    expect(page.get_by_text("default-vm")).to_have_count(0)
    expect(page.locator("nav")).not_to_contain_text("Hosts")
    shot(page, "instance-list-member")

    row.get_by_role("link", name="a-web").click()
    expect(page.locator("h1")).to_contain_text("a-web")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    # Hosts are for admins: a member gets an opaque host key, never the host's name or URI.
    expect(page.locator("dl.kv")).to_contain_text("Host key")
    assert test_host.name not in page.content() and test_host.uri not in page.content()
    expect(page.locator("dl.kv a")).to_have_count(0)

    response = page.goto(f"{asgi_url}/instances/{theirs.pk}/")
    assert response.status == 404
    shot(page, "instance-404")
    expect(page.get_by_text("b-db")).to_have_count(0)
    assert page.js_errors == []
