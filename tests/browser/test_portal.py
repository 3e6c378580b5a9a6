"""The tenant portal in Chromium: a member signs in, lands in the portal, creates an instance
within the project's quota on the lab (a real worker), watches it come up live, opens its
console; one more is refused by the quota with a clear message; the pages read well 390 px
wide (a phone)."""

from __future__ import annotations

import os
import re
import signal

import pytest

from ..conftest import settle_page, shot
from ..consoles.guest import write_disk

pytestmark = [
    pytest.mark.browser,
    pytest.mark.libvirt,
    pytest.mark.django_db(transaction=True),
]

LIVE = 90_000  # ms: a bound, not an expectation (a real worker, a shared machine)

# What a phone user meets: nothing wider than the screen, nothing too small to tap.
_PHONE_CHECK = """
() => {
  const visible = (el) => { const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= window.innerWidth + 0.5; };
  const small = [];
  document.querySelectorAll(".btn, select, input[type=text], .portal-nav a, .portal-nav button")
    .forEach((el) => { const r = el.getBoundingClientRect();
      if (r.width && r.height < 40) small.push(el.outerHTML.slice(0, 80) + " " + r.height); });
  const wide = [];
  document.querySelectorAll("body *").forEach((el) => {
    const r = el.getBoundingClientRect(); if (r.width && r.right > window.innerWidth + 0.5)
      wide.push(el.tagName + "." + el.className + " " + r.right); });
  return {
    scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth,
    fontSize: parseFloat(getComputedStyle(document.body).fontSize),
    keys: [...document.querySelectorAll("[data-phone-key]")].map(
      (el) => [el.getAttribute("data-phone-key"), visible(el)]),
    small: small,
    wide: wide.slice(0, 5),
  };
}
"""


def _delete_through_the_worker(job) -> None:
    """The live worker runs the delete; wait for its end (bounded) so the guest is gone."""
    import time

    deadline = time.monotonic() + LIVE / 1000
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in job.FINISHED:
            break
        time.sleep(0.5)
    assert job.status == job.Status.SUCCEEDED, (job.status, job.error)


def _tenant_login(page, base_url: str) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-alice-123")
    page.click("button[type=submit]")


def _phone_layout(page, keys: dict[str, str]) -> dict:
    for name, selector in keys.items():
        page.locator(selector).first.evaluate(f"el => el.setAttribute('data-phone-key', {name!r})")
    return page.evaluate(_PHONE_CHECK)


def test_a_tenant_creates_watches_and_opens_an_instance_within_quota(
    page, chromium, asgi_url, live_worker, lab_hosts, admin_user, member_user, settings
):
    from playwright.sync_api import expect

    from cloudpanel.projects.models import Membership, Project, Quota
    from hosts.models import Host
    from images.models import Image
    from instances import operations
    from instances.models import Instance
    from instances.services import flavor_create

    project = Project.objects.create(name="acme")
    Membership.objects.create(user=member_user, project=project, role="member")
    Quota.objects.create(project=project, instances=1)
    Host.objects.filter(pk=lab_hosts[1].pk).update(enabled=False)  # the guest goes to lab0
    path = write_disk(settings.IMAGE_STORE / "portal-boot.raw")
    Image.objects.create(
        name="portal-boot", disk_format="raw", status=Image.Status.ACTIVE, project=project,
        file=path.name, file_size=path.stat().st_size, virtual_size=path.stat().st_size,
    )  # fmt: skip
    flavor_create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)

    # Signing in lands in the portal, not in the admin console.
    _tenant_login(page, asgi_url)
    expect(page).to_have_url(f"{asgi_url}/portal/")
    expect(page.locator("h1")).to_have_text("acme")
    expect(page.locator('[data-usage-resource="instances"]')).to_contain_text("0 / 1")

    page.get_by_role("link", name="Create instance").click()
    page.fill("#id_name", "shop-1")
    page.select_option("#id_image", label="portal-boot")
    page.select_option("#id_flavor", label="tiny")
    # Held until the instance page is open and live, so the state change is watched.
    os.killpg(live_worker.pid, signal.SIGSTOP)
    try:
        page.get_by_role("button", name="Create", exact=True).click()
        expect(page).to_have_url(re.compile(rf"{re.escape(asgi_url)}/portal/instances/\d+/$"))
        instance = Instance.objects.get(name="shop-1")
        assert instance.project == project and instance.host_id == lab_hosts[0].pk
        badge = page.locator("h1 [data-instance-state]")
        expect(badge).to_have_text("Building")
        expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "open")
        page.evaluate("window.portalNotReloaded = true")
    finally:
        os.killpg(live_worker.pid, signal.SIGCONT)

    try:
        # "Running" arrives over the socket into the page as rendered: no reload yet.
        live = page.wait_for_function(
            "() => { const b = document.querySelector('h1 [data-instance-state]');"
            " return b && b.textContent === 'Running' ? String(!!window.portalNotReloaded)"
            " : null; }",
            timeout=LIVE,
        ).json_value()
        assert live == "true"
        # The job's end then reloads the page once: the console is offered.
        console = page.locator("[data-instance-console]", has_text="Console")
        expect(console).to_be_visible(timeout=LIVE)
        settle_page(page)  # the guest's tap came up during that reload
        shot(page, "portal-instance")
        console.click()
        expect(page).to_have_url(f"{asgi_url}/instances/{instance.pk}/console/")
        page.wait_for_selector('[data-console="vnc"][data-state="connected"]', timeout=LIVE)

        # One more is past the quota: a clear message, and nothing made.
        page.goto(f"{asgi_url}/portal/new/")
        page.fill("#id_name", "shop-2")
        page.get_by_role("button", name="Create", exact=True).click()
        expect(page.locator("[data-create-error]")).to_contain_text("Quota exceeded for instances")
        assert not Instance.objects.filter(name="shop-2").exists()
        expect(page.locator('[data-usage-resource="instances"]')).to_contain_text("1 / 1")
        expect(page.locator('[data-quota-full="instances"]')).to_be_visible()

        # A phone, 390 px wide, the same session.
        phone = chromium.new_context(
            viewport={"width": 390, "height": 844},
            storage_state=page.context.storage_state(),
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        try:
            small = phone.new_page()
            small.goto(f"{asgi_url}/portal/")
            expect(small.locator(f'tr[data-instance-id="{instance.pk}"]')).to_be_visible()
            layout = _phone_layout(
                small,
                {
                    "title": "h1",
                    "switcher": "#portal-project",
                    "instance": f'tr[data-instance-id="{instance.pk}"] .cell-main',
                    "state": f'tr[data-instance-id="{instance.pk}"] [data-instance-state]',
                    "usage": "[data-usage]",
                    "logout": ".portal-nav button",
                },
            )
            shot(small, "portal-phone")
            assert layout["width"] == 390 and layout["scrollWidth"] <= 390, layout
            assert all(seen for _, seen in layout["keys"]), layout
            assert layout["fontSize"] >= 14 and not layout["small"], layout
            # The table became cards: its header row is not shown.
            assert not small.locator("[data-instance-list] thead").is_visible()

            small.goto(f"{asgi_url}/portal/new/")
            layout = _phone_layout(
                small,
                {
                    "image": "#id_image",
                    "create": ".portal-form button[type=submit]",
                    "quota": ".alert",
                },
            )
            shot(small, "portal-phone-create")
            assert layout["scrollWidth"] <= 390 and not layout["small"], layout
            assert all(seen for _, seen in layout["keys"]), layout

            small.goto(f"{asgi_url}/portal/instances/{instance.pk}/")
            layout = _phone_layout(small, {"title": "h1", "console": "[data-instance-console]"})
            shot(small, "portal-phone-instance")
            assert layout["scrollWidth"] <= 390 and not layout["small"], layout
            assert all(seen for _, seen in layout["keys"]), layout
        finally:
            phone.close()

        # A job started elsewhere (the API, another tab) joins the jobs card and runs there.
        page.goto(f"{asgi_url}/portal/")
        expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "open")
        reboot = operations.POWER["reboot"].start(user=member_user, target=instance)
        item = page.locator(f'[data-job-list] [data-job-id="{reboot.pk}"]')
        try:
            expect(item.locator("[data-job-kind]")).to_have_text("instance.reboot", timeout=LIVE)
        except AssertionError as exc:  # say whether the job ran at all, and what the page lost
            reboot.refresh_from_db()
            raise AssertionError(
                f"{exc}\njob {reboot.pk} is {reboot.status}; requests that failed in the "
                f"browser: {page.failed_requests}"
            ) from None
        expect(item.locator("[data-job-status]")).to_have_text("Succeeded", timeout=LIVE)
        assert page.js_errors == []
    finally:
        _delete_through_the_worker(operations.DELETE.start(user=admin_user, target=instance))
