"""Back-pressure through the real server: a browser that stops reading stops the VNC side.

A VNC "server" here floods the proxy as fast as it can; the client completes the WebSocket
handshake and then reads nothing. The proxy may hold only what the sockets' buffers and
its own bounded buffer take: the flood's writes then block, and the bytes it managed to send
stop growing. Once the client reads again, the flood goes on.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
import uuid

import pytest
from django.test import Client

from cloudpanel.projects.services import project_get_default
from cloudpanel.virt import domains, get_pool
from instances import consoles
from instances.models import Flavor, Instance

pytestmark = pytest.mark.django_db(transaction=True)

TEST_URI = "test:///default"
CHUNK = b"\xab" * 65536
BOUND = 64 * 1024 * 1024  # far above what the buffers hold, far below an unbounded proxy


class Flood:
    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.listener.accept()
        conn.sendall(b"RFB 003.008\n")
        try:
            # Capped, so that a proxy without back-pressure fails this test, not the machine.
            while not self.stop and self.sent < 2 * BOUND:
                conn.sendall(CHUNK)  # blocks while the proxy does not read
                self.sent += len(CHUNK)
        except OSError:
            pass
        finally:
            conn.close()


def _settled(read, polls: int = 8, interval: float = 0.25, bound: float = 60.0) -> int:
    """The value once it stopped changing for `polls` readings in a row (bounded wait)."""
    deadline = time.monotonic() + bound
    last, same = read(), 0
    while same < polls and time.monotonic() < deadline:
        time.sleep(interval)
        now = read()
        same = same + 1 if now == last else 0
        last = now
    return last


def _handshake(port: int, path: str, cookie: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: binary\r\nOrigin: http://127.0.0.1:{port}\r\n"
        f"Cookie: {cookie}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing past the handshake is read
    assert b" 101 " in head.split(b"\r\n")[0], head
    return sock


def test_a_client_that_stops_reading_stops_the_vnc_server(uvicorn_port, admin_user, test_host):
    flood = Flood()
    name = f"flood-{uuid.uuid4().hex[:8]}"
    domains.define_domain(
        TEST_URI,
        f"<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type>"
        f"</os><devices><graphics type='vnc' port='{flood.port}' autoport='no' "
        "listen='127.0.0.1'/></devices></domain>",
    )
    domains.start_domain(TEST_URI, name)
    try:
        flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
        instance = Instance.objects.create(
            name="flood", project=project_get_default(), flavor=flavor, host=test_host,
            domain_name=name, state=Instance.State.RUNNING,
        )  # fmt: skip
        client = Client()
        client.force_login(admin_user)
        cookie = f"sessionid={client.cookies['sessionid'].value}"
        ticket = consoles.console_ticket_issue(user=admin_user, instance=instance)
        sock = _handshake(uvicorn_port, ticket["path"], cookie)
        stalled = _settled(lambda: flood.sent)
        assert 0 < stalled < BOUND, stalled  # held back, not buffered without end
        # Reading again lets the flood go on.
        got = 0
        while got < 2 * stalled + len(CHUNK):
            data = sock.recv(1 << 20)
            assert data, "the socket closed"
            got += len(data)
        assert flood.sent > stalled
        sock.close()
    finally:
        flood.stop = True
        domains.destroy_domain(TEST_URI, name)
        get_pool().call(TEST_URI, lambda c: c.lookupByName(name).undefine())
