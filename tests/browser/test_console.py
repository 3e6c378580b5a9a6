"""The console pages in Chromium against the real ASGI app and a running lab guest.

The guest is the boot sector of tests/consoles/guest.py: SeaBIOS's text is on its VGA
screen (what noVNC must draw), and it writes a known line on COM1, echoes what it reads
there, and writes there each key its keyboard gets (so keys typed through VNC show up on
the serial console).
"""

from __future__ import annotations

import re

import pytest

from ..conftest import browser_login, shot, wait_for_quiet_network
from ..consoles.guest import MESSAGE, write_disk
from ..instances.conftest import run_ok

pytestmark = [
    pytest.mark.browser,
    pytest.mark.libvirt,
    pytest.mark.django_db(transaction=True),
]

TIMEOUT = 60_000  # ms: a bound, not an expectation (TCG, a shared machine)

# Pixels on noVNC's canvas that are not black, once the screen is VGA text mode (720x400):
# the guest's firmware (SeaBIOS) set it and wrote on it. Before, QEMU shows a 640x480
# placeholder of its own ("Guest has not initialized the display"), which does not count.
_LIT_PIXELS = """
() => {
  const canvas = document.querySelector("#console-screen canvas");
  if (!canvas || canvas.width !== 720 || canvas.height !== 400) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] | data[i + 1] | data[i + 2]) lit++;
  return lit;
}
"""

_TERMINAL_TEXT = """
() => {
  const term = window.cloudpanelSerial;
  if (!term) return "";
  const buffer = term.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}
"""


@pytest.fixture
def running_guest(lab_hosts, admin_user, default_project, settings):
    from images.models import Image
    from instances import operations
    from instances.models import Instance
    from instances.services import flavor_create

    path = write_disk(settings.IMAGE_STORE / "console-boot.raw")
    image = Image.objects.create(
        name="console-boot", disk_format="raw", status=Image.Status.ACTIVE,
        project=default_project, file=path.name, file_size=path.stat().st_size,
        virtual_size=path.stat().st_size,
    )  # fmt: skip
    flavor = flavor_create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="console-vm", image=image, flavor=flavor, host=lab_hosts[0]
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    wait_for_quiet_network()  # the guest's tap has come up: no page load is cut short
    yield instance
    instance.refresh_from_db()
    run_ok(operations.DELETE.start(user=admin_user, target=instance))


def test_the_vnc_console_shows_the_guests_screen(page, asgi_url, running_guest, admin_user):
    browser_login(page, asgi_url)
    page.goto(f"{asgi_url}/instances/{running_guest.pk}/console/")
    card = page.locator('[data-console="vnc"]')
    page.wait_for_selector('[data-console="vnc"][data-state="connected"]', timeout=TIMEOUT)
    # The firmware's text, drawn from the VNC server's frames: not a blank canvas (the count
    # is the one the wait saw: the screen changes while the firmware runs).
    lit = page.wait_for_function(
        f"() => {{ const n = ({_LIT_PIXELS})(); return n > 500 ? n : 0; }}", timeout=TIMEOUT
    ).json_value()
    size = page.evaluate(
        "() => { const c = document.querySelector('#console-screen canvas');"
        " return [c.width, c.height]; }"
    )
    assert size == [720, 400], size  # VGA text mode, set by the firmware
    assert 500 < lit < size[0] * size[1], lit  # text on black, not a blank or a full fill
    assert page.get_by_role("button", name="Ctrl-Alt-Del").is_enabled()

    # Reconnect takes a new ticket (the first one is spent) and connects again.
    page.get_by_role("button", name="Reconnect").click()
    page.wait_for_selector('[data-console="vnc"][data-state="connected"]', timeout=TIMEOUT)
    page.wait_for_function(f"({_LIT_PIXELS})() > 500", timeout=TIMEOUT)
    assert card.get_attribute("data-state") == "connected"
    shot(page, "console")
    assert page.js_errors == []


def test_pasted_text_reaches_the_guest_as_keystrokes(page, asgi_url, running_guest):
    """Typed through the VNC page (shifted characters included), read by the guest's BIOS
    keyboard handler and written by the guest on its serial port, seen on the serial page."""
    browser_login(page, asgi_url)
    serial = page.context.new_page()
    serial.goto(f"{asgi_url}/instances/{running_guest.pk}/serial/")
    serial.wait_for_selector('[data-console="serial"][data-state="connected"]', timeout=TIMEOUT)
    line = MESSAGE.decode().strip()
    serial.wait_for_function(f"({_TERMINAL_TEXT})().includes({line!r})", timeout=TIMEOUT)
    page.goto(f"{asgi_url}/instances/{running_guest.pk}/console/")
    page.wait_for_selector('[data-console="vnc"][data-state="connected"]', timeout=TIMEOUT)
    # Typed again if the guest's BIOS saw nothing (seen once in a few runs: a first burst of
    # keys right after connecting went missing); what arrives must be exactly these keys.
    wanted = f"({_TERMINAL_TEXT})().includes('[H][i][!]')"
    for _ in range(5):
        page.fill("[data-console-paste-text]", "Hi!")
        page.get_by_role("button", name="Type it").click()
        try:
            serial.wait_for_function(wanted, timeout=10_000)
            break
        except Exception:  # playwright's TimeoutError: type it again
            continue
    text = serial.evaluate(_TERMINAL_TEXT)
    assert "[H][i][!]" in text, text[-400:]
    assert not re.search(r"\[(?![Hi!]\])", text), text[-400:]  # no other keys arrived
    assert page.js_errors == []


def test_the_serial_console_shows_the_guests_serial_port(page, asgi_url, running_guest):
    browser_login(page, asgi_url)
    page.goto(f"{asgi_url}/instances/{running_guest.pk}/serial/")
    page.wait_for_selector('[data-console="serial"][data-state="connected"]', timeout=TIMEOUT)
    line = MESSAGE.decode().strip()
    page.wait_for_function(f"({_TERMINAL_TEXT})().includes({line!r})", timeout=TIMEOUT)
    # Typed into the terminal, echoed by the guest as <byte>.
    page.locator("#serial-screen").click()
    page.keyboard.type("ok")
    page.wait_for_function(f"({_TERMINAL_TEXT})().includes('<o><k>')", timeout=TIMEOUT)
    shot(page, "serial-console")
    assert page.js_errors == []
