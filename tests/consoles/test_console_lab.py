"""The consoles of a real lab guest, through the WebSocket: real RFB, real serial bytes.

The guest is the boot sector of tests/consoles/guest.py on a raw disk (64 MiB of RAM): its
firmware draws on the VGA screen QEMU's VNC server shows, and its code writes a known line
on COM1 over and over and echoes what it reads there.
"""

from __future__ import annotations

import re
import struct

import pytest
from asgiref.sync import async_to_sync

from cloudpanel.projects.models import Membership
from images.models import Image
from instances import consoles, operations
from instances.models import Instance
from tests.instances.conftest import run_ok

from .conftest import open_socket, receive_until, session_cookie
from .guest import MESSAGE, write_disk

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _in_memory_channels(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def boot_image(default_project, settings):
    path = write_disk(settings.IMAGE_STORE / "serial-boot.raw")
    size = path.stat().st_size
    return Image.objects.create(
        name="serial-boot", disk_format="raw", status=Image.Status.ACTIVE,
        project=default_project, file=path.name, file_size=size, virtual_size=size,
    )  # fmt: skip


@pytest.fixture
def running_guest(lab_hosts, admin_user, boot_image, default_project):
    from instances.services import flavor_create

    flavor = flavor_create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    job = operations.CREATE.start(
        user=admin_user, name="console-vm", image=boot_image, flavor=flavor, host=lab_hosts[0]
    )
    run_ok(job)
    instance = Instance.objects.get(pk=job.target_id)
    assert instance.state == Instance.State.RUNNING
    yield instance
    instance.refresh_from_db()
    run_ok(operations.DELETE.start(user=admin_user, target=instance))


class RfbReader:
    """Reads exact byte counts out of a socket's binary frames."""

    def __init__(self, socket):
        self.socket = socket
        self.buffer = b""

    async def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            message = await self.socket.receive_output(30)
            assert message["type"] == "websocket.send", message
            self.buffer += message["bytes"]
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data


async def _rfb_session(path: str, cookie: bytes) -> tuple[bytes, int, int]:
    """Through the socket: the server's banner, then the handshake to its ServerInit."""
    socket, connected, subprotocol = await open_socket(path, cookie)
    assert connected and subprotocol == "binary"
    rfb = RfbReader(socket)
    banner = await rfb.read(12)
    await socket.send_to(bytes_data=b"RFB 003.008\n")
    (count,) = struct.unpack("!B", await rfb.read(1))
    types = await rfb.read(count)
    assert 1 in types, types  # None: the lab's VNC has no password
    await socket.send_to(bytes_data=b"\x01")
    assert await rfb.read(4) == b"\0\0\0\0"  # SecurityResult: OK
    await socket.send_to(bytes_data=b"\x01")  # ClientInit: shared
    width, height = struct.unpack("!HH", await rfb.read(4))
    await socket.disconnect()
    return banner, width, height


def test_the_console_socket_speaks_the_guests_rfb(running_guest, member_user, default_project):
    Membership.objects.create(project=default_project, user=member_user)
    ticket = consoles.console_ticket_issue(user=member_user, instance=running_guest)
    banner, width, height = async_to_sync(_rfb_session)(ticket["path"], session_cookie(member_user))
    assert re.fullmatch(rb"RFB 003\.00\d\n", banner), banner
    assert width > 0 and height > 0  # QEMU's ServerInit, through the proxy both ways


async def _serial_session(path: str, cookie: bytes) -> tuple[bytes, bytes]:
    socket, connected, _ = await open_socket(path, cookie)
    assert connected
    line = await receive_until(socket, MESSAGE)
    await socket.send_to(bytes_data=b"ping")  # the guest echoes each byte as <byte>
    echo = await receive_until(socket, b"<p><i><n><g>")
    await socket.disconnect()
    return line, echo


def test_the_serial_socket_carries_the_guests_serial_port(running_guest, admin_user):
    ticket = consoles.console_ticket_issue(user=admin_user, instance=running_guest)
    line, echo = async_to_sync(_serial_session)(ticket["serial_path"], session_cookie(admin_user))
    assert MESSAGE in line
    assert b"<p><i><n><g>" in echo
    # Closed cleanly: a new console opens at once (no session left behind on the host).
    again = consoles.console_ticket_issue(user=admin_user, instance=running_guest)
    line, _ = async_to_sync(_serial_session)(again["serial_path"], session_cookie(admin_user))
    assert MESSAGE in line


async def _two_serial_sessions(first_path: str, second_path: str, cookie: bytes) -> dict:
    first, connected, _ = await open_socket(first_path, cookie)
    assert connected
    await receive_until(first, MESSAGE)
    second, connected, _ = await open_socket(second_path, cookie)
    assert connected
    await receive_until(second, MESSAGE)
    # The second took the console over; the first one's stream ended, and so did its socket.
    while True:
        message = await first.receive_output(30)
        if message["type"] == "websocket.close":
            break
    await first.disconnect()
    await second.disconnect()
    return message


def test_a_second_serial_console_takes_over(running_guest, admin_user):
    cookie = session_cookie(admin_user)
    first = consoles.console_ticket_issue(user=admin_user, instance=running_guest)
    second = consoles.console_ticket_issue(user=admin_user, instance=running_guest)
    session = async_to_sync(_two_serial_sessions)
    closed = session(first["serial_path"], second["serial_path"], cookie)
    assert closed["type"] == "websocket.close"
