"""Pages that never need a reload: Chromium against the ASGI app (uvicorn: HTTP and the
/ws/status/ socket), the real Redis channel layer, and for the lab tests the real host
watcher (`manage.py watch_hosts` in its own process) on a real libvirt lab host.

What changes behind the page's back (a domain destroyed with virsh, a metrics sweep) must
show on the open page; a marker set in the page's window proves it was never reloaded.
"""

from __future__ import annotations

import threading

import pytest

from lab import virsh

from ..conftest import browser_login, shot, wait_for_quiet_network
from ..instances.conftest import dom_state, make_image, run_ok, uri_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 30_000  # ms: a bound for what the socket brings, not a measurement
MARK = "window.__cloudpanelMark"


def _off_loop(fn, *args, **kwargs):
    """Run fn in another thread: Playwright's sync API keeps an event loop running in this
    one, where async_to_sync (the publisher) refuses to run."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised below, in the test's thread
            result["error"] = exc
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _mark_window(page) -> None:
    page.evaluate(f"{MARK} = 'no reload since'")


def _not_reloaded(page) -> bool:
    return page.evaluate(f"{MARK} === 'no reload since'")


def _live(page) -> None:
    """Wait until the page's status socket delivered its snapshot."""
    from playwright.sync_api import expect

    expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "open")


def _held_until_live(route) -> None:
    """A route handler: answer once the page's status snapshot has been applied."""
    page = route.request.frame.page
    page.wait_for_function(
        "() => document.querySelector('[data-live-indicator]').dataset.state === 'open'"
    )
    route.continue_()


def _points(page, chart: str = "cpu") -> int:
    value = page.locator(f'[data-chart="{chart}"]').get_attribute("data-points")
    return int(value or 0)


# ---- the pages against events published here (no lab) -------------------------------------


def test_pages_apply_status_events_in_place(page, asgi_url, admin_user, test_host):
    """Instance list, overview, host list and a chart follow the status socket's events
    (published through the panel's own publisher) without a reload."""
    from playwright.sync_api import expect

    from cloudpanel.live import metrics
    from cloudpanel.live.publisher import ADMIN_GROUP, publish
    from cloudpanel.projects.services import project_get_default
    from hosts.events import broadcast_host
    from instances.events import broadcast_instance
    from instances.models import Flavor, Instance

    project = project_get_default()
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    web = Instance.objects.create(
        name="web", project=project, flavor=flavor, host=test_host, state="running"
    )
    db = Instance.objects.create(
        name="db", project=project, flavor=flavor, host=test_host, state="running"
    )
    metrics.forget(metrics.INSTANCE, web.pk)

    browser_login(page, asgi_url)
    page.goto(f"{asgi_url}/instances/")
    _live(page)
    _mark_window(page)
    web_badge = page.locator(f'tr[data-instance-id="{web.pk}"] [data-instance-state]')
    expect(web_badge).to_have_text("Running")

    web.state, web.state_reason = "crashed", "The guest crashed."
    web.save()
    _off_loop(broadcast_instance, web)
    expect(web_badge).to_have_text("Crashed", timeout=LIVE)
    expect(web_badge).to_have_class("badge dot state-crashed live-changed")
    expect(web_badge).to_have_attribute("title", "The guest crashed.")

    # A deleted instance's row is struck through; one the page never listed gets a hint.
    db.state = "deleted"  # its last event, as the delete operation sends it
    _off_loop(broadcast_instance, db)
    db_row = page.locator(f'tr[data-instance-id="{db.pk}"]')
    expect(db_row).to_have_class("is-gone", timeout=LIVE)
    expect(db_row.locator("[data-instance-state]")).to_have_text("Deleted")
    expect(page.locator("[data-new-instances]")).to_be_hidden()
    late = Instance.objects.create(
        name="late", project=project, flavor=flavor, host=test_host, state="building"
    )
    _off_loop(broadcast_instance, late)
    expect(page.locator("[data-new-instances]")).to_be_visible(timeout=LIVE)
    shot(page, "live-instance-list")
    assert _not_reloaded(page)

    # Changes made while the socket was down arrive with the snapshot of the reconnect.
    page.evaluate("CloudPanel.socket.drop()")
    expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "retry")
    web.state, web.state_reason = "paused", ""
    web.save()  # no event: only the next snapshot can tell the page
    _live(page)
    expect(web_badge).to_have_text("Paused", timeout=LIVE)
    expect(web_badge).not_to_have_attribute("title", "The guest crashed.")
    expect(db_row.locator("[data-instance-state]")).to_have_text("Running")  # never deleted
    expect(db_row).not_to_have_class("is-gone")
    assert _not_reloaded(page)
    web.state, web.state_reason = "crashed", "The guest crashed."
    web.save()

    # The overview counts instances by state from the snapshot, hosts by health live.
    page.goto(f"{asgi_url}/")
    _live(page)
    _mark_window(page)
    expect(page.locator("[data-instance-total]")).to_have_text("3")
    expect(page.locator('[data-instance-count="crashed"]')).to_have_text("1 crashed")
    expect(page.locator('[data-host-count="online"]')).to_have_text("1 online")
    test_host.status = "offline"
    test_host.last_error = "connection refused"
    test_host.save()
    _off_loop(broadcast_host, test_host)
    host_badge = page.locator(f'[data-host-status="{test_host.pk}"]')
    expect(host_badge).to_have_text("Offline", timeout=LIVE)
    expect(page.locator('[data-host-count="online"]')).to_have_text("0 online")
    expect(page.locator('[data-host-count="offline"]')).to_have_text("1 offline")
    shot(page, "live-overview")
    assert _not_reloaded(page)

    # The host list: health, its error and "last seen" follow the host's events.
    page.goto(f"{asgi_url}/hosts/")
    _live(page)
    _mark_window(page)
    error = page.locator(f'[data-host-error="{test_host.pk}"]')
    expect(error).to_have_text("connection refused")
    from django.utils import timezone

    test_host.status, test_host.last_seen_at = "online", timezone.now()
    test_host.save()
    _off_loop(broadcast_host, test_host)
    expect(host_badge).to_have_text("Online", timeout=LIVE)
    expect(error).to_be_hidden()
    expect(page.locator(f'[data-host-seen="{test_host.pk}"]')).to_have_text("just now")
    assert _not_reloaded(page)
    test_host.status = "offline"
    test_host.save()

    # A chart starts from the API's history and grows from the socket's samples.
    now = 1_900_000_000.0
    sample = {
        "cpu_percent": 12.5,
        "memory_used_bytes": 40 << 20,
        "memory_total_bytes": 64 << 20,
        "disk_read_bps": 1024.0,
        "disk_write_bps": 4096.0,
        "net_rx_bps": 300.0,
        "net_tx_bps": 120.0,
    }
    for i in range(3):
        _off_loop(metrics.record_many, metrics.INSTANCE, {web.pk: {**sample, "t": now + 5 * i}})
    # Hold the history back so the snapshot's newest sample arrives first: the chart must
    # still hold all three (an order bug once kept only the snapshot's).
    page.route(f"**/api/v1/instances/{web.pk}/metrics/", _held_until_live, times=1)
    page.goto(f"{asgi_url}/instances/{web.pk}/")
    _live(page)
    _mark_window(page)
    expect(page.locator('[data-chart="cpu"]')).to_have_attribute("data-points", "3")
    for i in range(3, 6):
        message = {
            "type": "status.metrics",
            "host": test_host.pk,
            "t": now + 5 * i,
            "host_totals": {**sample, "t": now + 5 * i, "instances": 1},
            "instances": [{"id": web.pk, "project": project.pk, **sample, "t": now + 5 * i}],
        }
        _off_loop(publish, [ADMIN_GROUP], message)
        expect(page.locator('[data-chart="cpu"]')).to_have_attribute(
            "data-points", str(i + 1), timeout=LIVE
        )
    expect(page.locator('[data-chart="memory"] canvas')).to_have_count(1)
    expect(page.locator("[data-metrics-empty]")).to_be_hidden()
    shot(page, "live-instance-charts")
    assert _not_reloaded(page)

    # A state that offers other actions: the instance page reloads itself, once.
    expect(page.locator("[data-instance-console]")).to_have_count(0)
    web.state, web.state_reason = "running", ""
    web.save()
    _off_loop(broadcast_instance, web)
    page.wait_for_function(f"typeof {MARK} === 'undefined'", timeout=LIVE)
    expect(page.locator("h1 [data-instance-state]")).to_have_text("Running")
    expect(page.locator("[data-instance-console]")).to_have_text(["Console", "Serial console"])
    expect(page.locator(".instance-actions button")).to_have_text(
        ["Shutdown", "Stop", "Reboot", "Reset", "Suspend", "Delete", "Forget"]
    )
    assert page.js_errors == []
    metrics.forget(metrics.INSTANCE, web.pk)


def test_member_list_follows_own_project_only(page, asgi_url, member_user, test_host):
    """A member's list: their instance's badge and a job started elsewhere (in its row, with
    progress) arrive live; another project's instance is never hinted at."""
    from playwright.sync_api import expect

    from cloudpanel.jobs.events import broadcast
    from cloudpanel.jobs.models import Job
    from cloudpanel.projects.models import Membership, Project
    from instances.events import broadcast_instance
    from instances.models import Flavor, Instance

    mine, theirs = Project.objects.create(name="mine"), Project.objects.create(name="theirs")
    Membership.objects.create(user=member_user, project=mine)
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    web = Instance.objects.create(
        name="web", project=mine, flavor=flavor, host=test_host, state="running"
    )

    page.goto(f"{asgi_url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-alice-123")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_be_visible()
    page.goto(f"{asgi_url}/instances/")
    _live(page)
    _mark_window(page)
    row = page.locator(f'tr[data-instance-id="{web.pk}"]')

    # Another project's new instance: not a word on this page.
    other = Instance.objects.create(
        name="other", project=theirs, flavor=flavor, host=test_host, state="building"
    )
    _off_loop(broadcast_instance, other)
    # A job on our instance, started elsewhere (another tab, the API).
    job = Job.objects.create(
        kind="instance.reboot",
        target_type="instance",
        target_id=web.pk,
        target_name="web",
        project=mine,
        status="running",
        progress=40,
        step="Rebooting",
        public_step="Rebooting the guest",
    )
    web.current_job = job
    web.save()
    _off_loop(broadcast_instance, web)
    cell = row.locator(f'[data-job-id="{job.id}"]')
    expect(cell).to_have_count(1, timeout=LIVE)
    _off_loop(broadcast, job)
    expect(cell.locator("[data-job-kind]")).to_have_text("instance.reboot", timeout=LIVE)
    expect(cell.locator("[data-job-step]")).to_have_text("Rebooting the guest")  # tenant's view
    expect(cell.locator("[data-job-progress-text]")).to_have_text("40%")
    # The other project's instance arrived first: had it reached this socket, the hint
    # would show by now.
    expect(page.locator("[data-new-instances]")).to_be_hidden()
    shot(page, "live-member-list")
    assert _not_reloaded(page)

    # Their overview counts their instances only.
    page.goto(f"{asgi_url}/")
    _live(page)
    expect(page.locator("[data-instance-total]")).to_have_text("1")
    expect(page.locator('[data-instance-count="running"]')).to_have_text("1 running")
    shot(page, "live-member-overview")
    assert page.js_errors == []


def test_signing_out_elsewhere_stops_the_socket(page, asgi_url, admin_user, test_host):
    """Signed out in another tab: the server closes the socket with 4401 and the page stops
    (no reconnect loop against a session that is gone) and says so."""
    from playwright.sync_api import expect

    browser_login(page, asgi_url)
    page.goto(f"{asgi_url}/hosts/")
    _live(page)
    other = page.context.new_page()
    other.goto(f"{asgi_url}/")
    other.click("details.usermenu summary")
    other.get_by_role("button", name="Log out").click()
    expect(other).to_have_url(f"{asgi_url}/login/")
    indicator = page.locator("[data-live-indicator]")
    expect(indicator).to_have_attribute("data-state", "closed", timeout=LIVE)
    expect(indicator).to_have_text("Signed out")
    assert page.evaluate("CloudPanel.socket.connected()") is False
    assert page.js_errors == []


# ---- the real watcher on a real lab host ---------------------------------------------------


@pytest.fixture
def lab_instance(admin_user, default_project, settings, monkeypatch, lab_hosts):
    """lab_instance(name) -> a running instance on lab host 1, provisioned in this process
    (no worker, nothing queued); deleted through the panel at the end, so no domain or volume
    stays on the session's lab for later tests."""
    from cloudpanel.live import metrics
    from instances import operations
    from instances.models import Instance
    from instances.services import flavor_create

    monkeypatch.setattr("cloudpanel.jobs.services.job_enqueue", lambda job: None)
    host = lab_hosts[1]
    made: list[Instance] = []
    # Ids come round again from run to run: no samples of an earlier run's objects.
    metrics.forget(metrics.HOST, host.pk)

    def make(name: str) -> Instance:
        image = make_image(default_project, settings, name=f"{name}-img")
        flavor = flavor_create(name=f"{name}-flavor", vcpus=1, ram_mib=64, disk_gib=1)
        job = operations.CREATE.start(
            user=admin_user, name=name, image=image, flavor=flavor, host=host
        )
        run_ok(job)
        instance = Instance.objects.get(pk=job.target_id)
        metrics.forget(metrics.INSTANCE, instance.pk)
        made.append(instance)
        wait_for_quiet_network()  # its tap has come up: no page load is cut short
        assert instance.state == "running" and dom_state(host, instance.domain_name) == "running"
        return instance

    yield make
    for instance in made:
        instance.refresh_from_db()
        run_ok(operations.DELETE.start(user=admin_user, target=instance))
        assert dom_state(host, instance.domain_name) is None
        metrics.forget(metrics.INSTANCE, instance.pk)
    metrics.forget(metrics.HOST, host.pk)


def _wait_for_samples(watcher, instance, count: int) -> list[dict]:
    """Until the watcher stored `count` samples of the instance: it owns the host now."""
    import time

    from cloudpanel.live import metrics

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        samples = metrics.recent(metrics.INSTANCE, instance.pk)
        if len(samples) >= count:
            return samples
        watcher.check()
        time.sleep(0.2)
    pytest.fail(f"the watcher stored no {count} samples of {instance.name} within 60 s")


@pytest.mark.libvirt
def test_instance_list_shows_a_virsh_destroy_without_reload(
    page, asgi_url, lab_hosts, live_watcher, lab_instance
):
    from playwright.sync_api import expect

    from instances.models import Instance

    host = lab_hosts[1]
    instance = lab_instance("dvm")
    watcher = live_watcher()
    _wait_for_samples(watcher, instance, 1)

    browser_login(page, asgi_url)
    page.goto(f"{asgi_url}/instances/")
    _live(page)
    badge = page.locator(f'tr[data-instance-id="{instance.pk}"] [data-instance-state]')
    expect(badge).to_have_text("Running")
    _mark_window(page)

    # Behind the panel's back: libvirt itself pulls the plug.
    virsh(uri_of(host), "destroy", instance.domain_name)
    assert dom_state(host, instance.domain_name) == "shut off"

    expect(badge).to_have_text("Shut off", timeout=LIVE)
    expect(badge).to_have_class("badge dot state-shutoff live-changed")
    assert _not_reloaded(page)
    assert Instance.objects.get(pk=instance.pk).state == "shutoff"  # the watcher wrote it
    shot(page, "live-virsh-destroy")
    watcher.check()
    assert page.js_errors == []


@pytest.mark.libvirt
def test_instance_chart_gains_points_from_the_watcher(
    page, asgi_url, settings, lab_hosts, live_watcher, lab_instance
):
    from playwright.sync_api import expect

    settings.WATCHER_STATS_INTERVAL = 1.0  # what the metrics API tells the page
    host = lab_hosts[1]
    instance = lab_instance("cvm")
    watcher = live_watcher(stats_interval=1)
    history = _wait_for_samples(watcher, instance, 3)
    assert all("cpu_percent" in s and "memory_used_bytes" in s for s in history[-2:]), history

    browser_login(page, asgi_url)
    page.goto(f"{asgi_url}/instances/{instance.pk}/")
    _live(page)
    _mark_window(page)
    chart = page.locator('[data-chart="cpu"]')
    # The history from the API first, at least the samples stored before the page opened.
    page.wait_for_function(
        "n => Number(document.querySelector('[data-chart=\"cpu\"]').dataset.points) >= n",
        arg=len(history),
        timeout=LIVE,
    )
    first = _points(page)
    # Then the watcher's sweeps, over the socket: the series grows while the page is open.
    for _ in range(2):
        page.wait_for_function(
            "n => Number(document.querySelector('[data-chart=\"cpu\"]').dataset.points) > n",
            arg=_points(page),
            timeout=LIVE,
        )
    assert _points(page) >= first + 2
    series = page.evaluate("CloudPanel.live.charts.panels[0].xs.length")
    assert series >= first + 2
    expect(chart.locator("canvas")).to_have_count(1)
    expect(page.locator("[data-metrics-empty]")).to_be_hidden()
    expect(page.locator("[data-instance-console]")).to_have_count(2)
    assert _not_reloaded(page)
    shot(page, "live-instance-chart")

    # The host page charts the host's totals the same way.
    page.goto(f"{asgi_url}/hosts/{host.pk}/")
    _live(page)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-chart=\"instances\"]').dataset.points) >= 1",
        timeout=LIVE,
    )
    page.wait_for_function(
        "n => Number(document.querySelector('[data-chart=\"cpu\"]').dataset.points) > n",
        arg=_points(page),
        timeout=LIVE,
    )
    shot(page, "live-host-chart")
    watcher.check()
    assert page.js_errors == []
