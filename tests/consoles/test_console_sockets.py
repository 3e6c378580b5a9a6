"""The console sockets' checks and pumping, on libvirt's test driver (no lab needed).

The VNC endpoint still comes from a live domain XML: a test:///default domain whose VNC
port is that of a small TCP server here, which sends an RFB banner and echoes what it gets.
Every socket goes through the project's whole ASGI stack (origin check, session cookie,
routing) with a real signed-in session.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from cloudpanel.live.metrics import client as redis_client
from cloudpanel.projects.models import Membership, Project
from cloudpanel.virt import domains, get_pool
from instances import consoles, consumers
from instances.models import Flavor, Instance

from .conftest import open_socket, receive_until, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

BANNER = b"RFB 003.008\n"
TEST_URI = "test:///default"


class EchoServer:
    """Sends the banner, then echoes every byte back; records what each connection got."""

    def __init__(self):
        self.connections = 0
        self.ended = 0  # connections the proxy closed
        self.server = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        self.connections += 1
        self.writers.append(writer)
        writer.write(BANNER)
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        self.ended += 1
        writer.close()

    async def stop(self):
        for writer in self.writers:
            writer.close()
        self.server.close()


def _domain_xml(name: str, port: int) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory>65536</memory>"
        "<os><type>hvm</type></os><devices>"
        f"<graphics type='vnc' port='{port}' autoport='no' listen='127.0.0.1'>"
        "<listen type='address' address='127.0.0.1'/></graphics>"
        "</devices></domain>"
    )


@pytest.fixture
async def echo_server():
    server = EchoServer()
    server.port = await server.start()
    yield server
    await server.stop()


@sync_to_async
def _world(django_user_model, test_host, port: int) -> dict:
    users = {
        name: django_user_model.objects.create_user(name, password=f"pw-{name}-123")
        for name in ("alice", "bob", "carol", "dave")
    }
    a = Project.objects.create(name="proj-a")
    b = Project.objects.create(name="proj-b")
    Membership.objects.create(project=a, user=users["alice"])
    Membership.objects.create(project=a, user=users["dave"])
    Membership.objects.create(project=a, user=users["carol"], role=Membership.Role.VIEWER)
    Membership.objects.create(project=b, user=users["bob"])
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    instances = {}
    for label in ("vm1", "vm2"):
        name = f"console-{label}-{uuid.uuid4().hex[:8]}"
        domains.define_domain(TEST_URI, _domain_xml(name, port))
        domains.start_domain(TEST_URI, name)
        instances[label] = Instance.objects.create(
            name=label, project=a, flavor=flavor, host=test_host, domain_name=name,
            state=Instance.State.RUNNING,
        )  # fmt: skip
    cookies = {name: session_cookie(user) for name, user in users.items()}
    return {"users": users, "cookies": cookies, "a": a, "b": b, **instances}


@pytest.fixture
async def world(django_user_model, test_host, echo_server):
    data = await _world(django_user_model, test_host, echo_server.port)
    yield data
    for label in ("vm1", "vm2"):
        name = data[label].domain_name
        await sync_to_async(domains.destroy_domain)(TEST_URI, name)
        await sync_to_async(get_pool().call)(
            TEST_URI, lambda c, n=name: c.lookupByName(n).undefine()
        )


@sync_to_async
def _ticket(user, instance) -> dict:
    return consoles.console_ticket_issue(user=user, instance=instance)


def _path(instance, ticket: str, kind: str = "console") -> str:
    return f"/ws/instances/{instance.uuid}/{kind}/?ticket={ticket}"


async def _refused(path: str, cookie: bytes | None, code: int, origin=...):
    kwargs = {} if origin is ... else {"origin": origin}
    socket, connected, detail = await open_socket(path, cookie, **kwargs)
    assert not connected, path
    assert detail == code, (path, detail)
    await socket.disconnect()


# ---- what works -------------------------------------------------------------------------------


async def test_the_proxy_pumps_bytes_both_ways_as_binary_frames(world, echo_server, caplog):
    caplog.set_level(logging.INFO, logger="cloudpanel.consoles")
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    assert ticket["path"] == _path(world["vm1"], ticket["ticket"])
    socket, connected, subprotocol = await open_socket(ticket["path"], world["cookies"]["alice"])
    assert connected and subprotocol == "binary"  # what noVNC offers
    assert await receive_until(socket, BANNER) == BANNER
    payload = bytes(range(256)) * 64  # binary, every byte value
    await socket.send_to(bytes_data=payload)
    assert (await receive_until(socket, payload)) == payload
    await socket.send_to(text_data="RFB 003.008\n")  # a text frame is passed on as its bytes
    assert await receive_until(socket, b"RFB 003.008\n")
    await socket.disconnect()
    opened = [r.getMessage() for r in caplog.records if "console opened" in r.getMessage()]
    assert opened and "user alice" in opened[0] and "instance vm1" in opened[0], opened


async def test_the_socket_closes_when_the_vnc_server_goes(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    socket, connected, _ = await open_socket(ticket["path"], world["cookies"]["alice"])
    assert connected
    await receive_until(socket, BANNER)
    for writer in echo_server.writers:
        writer.close()
    message = await socket.receive_output(20)
    assert message == {"type": "websocket.close", "code": 1000}
    await socket.disconnect()


async def test_the_vnc_connection_closes_when_the_browser_goes(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    socket, connected, _ = await open_socket(ticket["path"], world["cookies"]["alice"])
    assert connected
    await receive_until(socket, BANNER)
    assert echo_server.ended == 0
    await socket.disconnect()
    for _ in range(2000):  # the proxy closes its TCP connection: the server reads its end
        if echo_server.ended:
            break
        await asyncio.sleep(0.01)
    assert echo_server.ended == 1


async def test_no_channel_layer_is_used(world, settings):
    """The console works with a channel layer that cannot work at all: it never uses one."""
    assert consumers.VncConsoleConsumer.channel_layer_alias is None
    assert consumers.SerialConsoleConsumer.channel_layer_alias is None
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]},  # nothing listens on port 9
        }
    }
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    socket, connected, _ = await open_socket(ticket["path"], world["cookies"]["alice"])
    assert connected
    await receive_until(socket, BANNER)
    await socket.disconnect()


async def test_an_admin_opens_any_console(world, admin_user):
    cookie = await sync_to_async(session_cookie)(admin_user)
    ticket = await _ticket(admin_user, world["vm2"])
    socket, connected, _ = await open_socket(ticket["path"], cookie)
    assert connected
    await receive_until(socket, BANNER)
    await socket.disconnect()


async def _closed_with(socket) -> int:
    while True:
        message = await socket.receive_output(20)
        if message["type"] == "websocket.close":
            return message["code"]


async def test_an_open_console_closes_when_access_is_lost(world, monkeypatch):
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.05)
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    socket, connected, _ = await open_socket(ticket["path"], world["cookies"]["alice"])
    assert connected
    await receive_until(socket, BANNER)
    await sync_to_async(
        Membership.objects.filter(user=world["users"]["alice"], project=world["a"]).delete
    )()
    assert await _closed_with(socket) == 4403
    await socket.disconnect()


async def test_an_open_console_closes_when_its_session_signs_out(world, monkeypatch):
    from django.contrib.sessions.models import Session

    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.05)
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    socket, connected, _ = await open_socket(ticket["path"], world["cookies"]["alice"])
    assert connected
    await receive_until(socket, BANNER)
    key = world["cookies"]["alice"].decode().split("=", 1)[1]
    await sync_to_async(Session.objects.filter(session_key=key).delete)()  # signed out
    assert await _closed_with(socket) == 4403
    await socket.disconnect()


# ---- refusals -----------------------------------------------------------------------------------


async def test_a_ticket_is_single_use(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    socket, connected, _ = await open_socket(ticket["path"], world["cookies"]["alice"])
    assert connected
    await socket.disconnect()
    await _refused(ticket["path"], world["cookies"]["alice"], 4403)
    # The serial path takes the same ticket, and it is used up there too.
    await _refused(ticket["serial_path"], world["cookies"]["alice"], 4403)
    assert echo_server.connections == 1


async def test_anonymous_is_refused(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    await _refused(ticket["path"], None, 4401)
    assert echo_server.connections == 0


async def test_a_ticket_of_another_user_is_refused_and_spent(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    # dave may open vm1's console himself, but not with alice's ticket...
    await _refused(ticket["path"], world["cookies"]["dave"], 4403)
    # ...and bob, of another project, gets the very same answer.
    ticket2 = await _ticket(world["users"]["alice"], world["vm1"])
    await _refused(ticket2["path"], world["cookies"]["bob"], 4403)
    # A ticket presented by the wrong user is spent: alice cannot use it after that.
    await _refused(ticket["path"], world["cookies"]["alice"], 4403)
    assert echo_server.connections == 0


async def test_bad_and_missing_tickets_are_refused(world, echo_server):
    alice = world["cookies"]["alice"]
    vm1 = world["vm1"]
    for ticket in ("", "nope", "x" * 500, "%00", "a&ticket=b"):
        await _refused(_path(vm1, ticket), alice, 4403)
    await _refused(f"/ws/instances/{vm1.uuid}/console/", alice, 4403)
    assert echo_server.connections == 0


async def test_an_expired_ticket_is_refused(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    key = consoles._key(ticket["ticket"])
    store = redis_client()
    assert 0 < store.ttl(key) <= 30  # issued for CONSOLE_TICKET_SECONDS
    store.pexpire(key, 1)  # its life ends now, as after 30 s
    for _ in range(1000):
        if not store.exists(key):
            break
        await asyncio.sleep(0.01)
    await _refused(ticket["path"], world["cookies"]["alice"], 4403)
    assert echo_server.connections == 0


async def test_a_ticket_for_another_instance_is_refused(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    wrong = ticket["path"].replace(str(world["vm1"].uuid), str(world["vm2"].uuid))
    await _refused(wrong, world["cookies"]["alice"], 4403)
    # An unknown uuid gets the same answer as a real one: nothing is looked up by it.
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    unknown = ticket["path"].replace(str(world["vm1"].uuid), str(uuid.uuid4()))
    await _refused(unknown, world["cookies"]["alice"], 4403)
    assert echo_server.connections == 0


async def test_a_foreign_origin_is_refused_before_the_ticket_is_looked_at(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    for origin in (b"http://evil.example:8000", b"http://127.0.0.1:8001", None):
        socket, connected, _ = await open_socket(
            ticket["path"], world["cookies"]["alice"], origin=origin
        )
        assert not connected, origin
        await socket.disconnect()
    assert echo_server.connections == 0
    # The origin check came first (SameOriginValidator): the ticket is still unused.
    socket, connected, _ = await open_socket(ticket["path"], world["cookies"]["alice"])
    assert connected
    await socket.disconnect()


async def test_access_lost_after_the_ticket_is_refused(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    await sync_to_async(
        Membership.objects.filter(user=world["users"]["alice"], project=world["a"]).delete
    )()
    await _refused(ticket["path"], world["cookies"]["alice"], 4403)
    assert echo_server.connections == 0


async def test_an_instance_that_stopped_has_no_console(world, echo_server):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    await sync_to_async(Instance.objects.filter(pk=world["vm1"].pk).update)(state="shutoff")
    await _refused(ticket["path"], world["cookies"]["alice"], 4404)
    assert echo_server.connections == 0


async def test_a_vnc_server_that_is_gone_refuses_the_socket(world, echo_server):
    await echo_server.stop()
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    await _refused(ticket["path"], world["cookies"]["alice"], 4404)


async def test_the_test_driver_has_no_serial_console(world):
    ticket = await _ticket(world["users"]["alice"], world["vm1"])
    await _refused(ticket["serial_path"], world["cookies"]["alice"], 4404)


# ---- tickets through the API ---------------------------------------------------------------------


@sync_to_async
def _api_ticket(user, instance):
    client = APIClient()
    client.force_authenticate(user)
    return client.post(f"/api/v1/instances/{instance.pk}/console/")


async def test_api_tickets_members_only(world):
    answer = await _api_ticket(world["users"]["alice"], world["vm1"])
    assert answer.status_code == 201, answer.content
    assert set(answer.json()) == {"ticket", "path", "serial_path", "expires_in"}
    viewer = await _api_ticket(world["users"]["carol"], world["vm1"])
    assert viewer.status_code == 403, viewer.content  # a viewer may look, not type
    other = await _api_ticket(world["users"]["bob"], world["vm1"])
    assert other.status_code == 404, other.content  # another project's: as if unknown
    missing = await sync_to_async(APIClient().post)(f"/api/v1/instances/{world['vm1'].pk}/console/")
    assert missing.status_code in (401, 403)
