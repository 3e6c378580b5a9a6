"""The host watcher as production runs it (`manage.py watch_hosts` processes) on the real
libvirt lab: domains are started and destroyed through libvirt directly, behind the panel's
back, and the database, the channel layer and a real /ws/status/ socket hear of it.

The guests are tiny and OS-less (64 MiB, no disk: the firmware finds nothing to boot and
idles), defined behind the panel's back and then adopted, so the panel manages them.
Latencies are printed, not asserted: waits have generous bounds only.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
import time
import uuid

import libvirt
import pytest

from cloudpanel.live import metrics
from cloudpanel.live.publisher import ADMIN_GROUP, project_group
from cloudpanel.projects.models import Project
from hosts.connection import connection_uri
from hosts.models import Host
from instances.models import Instance
from instances.services import instance_adopt
from instances.watcher.lease import lease_key

from .conftest import LEASE_SECONDS, tiny_domain_xml, wait_until

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]

ORIGIN = b"http://127.0.0.1:8000"


@pytest.fixture
def virt_domains(lab_hosts):
    """define(host, name) -> a libvirt domain defined behind the panel's back; all removed."""
    made: list[tuple[libvirt.virConnect, str]] = []
    conns: dict[int, libvirt.virConnect] = {}

    def define(host: Host, name: str | None = None) -> libvirt.virDomain:
        conn = conns.get(host.pk) or conns.setdefault(host.pk, libvirt.open(connection_uri(host)))
        name = name or f"wx-{uuid.uuid4().hex[:8]}"
        made.append((conn, name))
        return conn.defineXML(tiny_domain_xml(name, host.domain_type))

    yield define
    for conn, name in made:
        try:
            dom = conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass
    for conn in conns.values():
        conn.close()


def _adopt(admin_user, host, dom, project=None) -> Instance:
    return instance_adopt(user=admin_user, host=host, domain_name=dom.name(), project=project)


def _state_is(instance_id: int, state: str):
    return lambda: Instance.objects.filter(pk=instance_id, state=state).exists()


def _instance_msg(instance_id: int, state: str):
    return lambda m: (
        m["type"] == "status.instance"
        and m["instance"]["id"] == instance_id
        and m["instance"]["state"] == state
    )


def _unmanaged(host: Host) -> set[str]:
    return {d["name"] for d in Host.objects.get(pk=host.pk).unmanaged_domains}


class StatusSocket:
    """A real /ws/status/ socket (WebsocketCommunicator, real session cookie) in a thread
    with its own event loop; frames are collected with their arrival time."""

    def __init__(self, cookie: bytes) -> None:
        self.cookie = cookie
        self.frames: queue.Queue = queue.Queue()
        self.connected: bool | None = None
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._run())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        from channels.testing import WebsocketCommunicator

        from cloudpanel.asgi import application

        headers = [(b"cookie", self.cookie), (b"host", b"127.0.0.1:8000"), (b"origin", ORIGIN)]
        socket = WebsocketCommunicator(application, "/ws/status/", headers=headers)
        self.connected, _ = await socket.connect(timeout=10)
        self._ready.set()
        try:
            while self.connected:
                # A long timeout: the communicator cancels the app when a read times out.
                raw = await socket.receive_from(timeout=3600)
                self.frames.put((time.time(), json.loads(raw)))
        finally:
            await socket.disconnect()

    def start(self) -> StatusSocket:
        self._thread.start()
        assert self._ready.wait(15) and self.connected, "/ws/status/ refused the admin"
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def wait_for(self, predicate, timeout: float = 5.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, frame = self.frames.get(timeout=left)
            except queue.Empty:
                break
            if predicate(frame):
                return at, frame
        raise AssertionError(f"no matching frame on /ws/status/ within {timeout} s")


@pytest.fixture
def status_socket(admin_user):
    from tests.jobs.conftest import session_cookie

    sockets: list[StatusSocket] = []

    def open_socket() -> StatusSocket:
        sock = StatusSocket(session_cookie(admin_user)).start()
        sockets.append(sock)
        return sock

    yield open_socket
    for sock in sockets:
        sock.stop()


def _wait_watching(proc, *hosts: Host, timeout: float = 60.0, after: int = 0) -> None:
    for host in hosts:
        proc.wait_line(rf"watching host {host.name} \(id {host.pk}\)", timeout, after=after)


def test_event_behind_the_panels_back_reaches_db_and_socket(
    lab_hosts, admin_user, virt_domains, start_watcher, listen, status_socket
):
    host = lab_hosts[0]
    watcher = start_watcher()
    _wait_watching(watcher, *lab_hosts)

    # Defined behind the panel's back: an unmanaged domain, on the host's list by the event.
    dom = virt_domains(host)
    wait_until(lambda: dom.name() in _unmanaged(host), timeout=5)
    instance = _adopt(admin_user, host, dom)
    assert instance.state == "shutoff"

    admins = listen(ADMIN_GROUP)
    socket = status_socket()
    socket.wait_for(lambda f: f["type"] == "snapshot")

    for action, state in ((dom.create, "running"), (dom.destroy, "shutoff")):
        mark = len(watcher.lines)
        before = time.time()
        action()
        returned = time.time()
        db_at = wait_until(
            lambda s=state: _state_is(instance.pk, s)() and time.time(), timeout=5, interval=0.005
        )
        layer_at, message = admins.wait_for(_instance_msg(instance.pk, state), timeout=5)
        socket_at, frame = socket.wait_for(
            lambda f, s=state: (
                f["type"] == "instance"
                and f["instance"]["id"] == instance.pk
                and f["instance"]["state"] == s
            )
        )
        assert message["public"]["state"] == state and "host" not in message["public"]
        assert frame["instance"]["host"] == host.pk  # the admin's view
        # When libvirt's event reached the watcher, as its log line says.
        _, line = watcher.wait_line(rf"{dom.name()} on {host.name}\): .* -> {state}", after=mark)
        event_at = float(re.search(r"event at ([0-9.]+)", line).group(1))
        print(
            f"\n{action.__name__} on {host.name}: the libvirt call took "
            f"{1000 * (returned - before):.0f} ms (the event came "
            f"{1000 * (event_at - before):.0f} ms after it began); from the event: database "
            f"{1000 * (db_at - event_at):.1f} ms, channel layer {1000 * (layer_at - event_at):.1f}"
            f" ms, /ws/status/ {1000 * (socket_at - event_at):.1f} ms"
        )


def test_unmanaged_domains_follow_events(lab_hosts, virt_domains, start_watcher):
    host = lab_hosts[1]
    watcher = start_watcher()
    _wait_watching(watcher, host)
    dom = virt_domains(host)
    wait_until(lambda: dom.name() in _unmanaged(host), timeout=5)
    dom.undefine()
    wait_until(lambda: dom.name() not in _unmanaged(host), timeout=5)


def test_one_owner_per_host_and_takeover_after_sigkill(
    lab_hosts, admin_user, virt_domains, start_watcher, listen
):
    host = lab_hosts[0]
    first = start_watcher()
    _wait_watching(first, *lab_hosts)
    second = start_watcher()
    second.wait_line("host watcher .* started")

    dom = virt_domains(host)
    instance = _adopt(admin_user, host, dom)
    admins = listen(ADMIN_GROUP)
    dom.create()
    admins.wait_for(_instance_msg(instance.pk, "running"), timeout=5)
    # A bounded look (two lease lifetimes) for a second publisher of the same change.
    late = admins.drain(2 * LEASE_SECONDS)
    assert not [m for m in late if _instance_msg(instance.pk, "running")(m)], late
    assert not second.has_line("watching host"), "the second watcher took an owned host"
    owner = metrics.client().get(lease_key(host.pk)).decode()
    assert f":{first.proc.pid}:" in owner

    killed = time.time()
    first.kill()  # SIGKILL: no release, the lease has to run out
    taken_at, _ = second.wait_line(
        rf"watching host {host.name} \(id {host.pk}\)", timeout=LEASE_SECONDS * 3 + 20
    )
    _wait_watching(second, lab_hosts[1], timeout=LEASE_SECONDS * 3 + 20)
    assert f":{second.proc.pid}:" in metrics.client().get(lease_key(host.pk)).decode()
    print(f"\ntakeover after SIGKILL: {taken_at - killed:.2f} s (lease {LEASE_SECONDS:g} s)")

    mark = len(second.lines)
    dom.destroy()
    at, _ = admins.wait_for(_instance_msg(instance.pk, "shutoff"), timeout=5)
    wait_until(_state_is(instance.pk, "shutoff"), timeout=5)
    _, line = second.wait_line(rf"{dom.name()} on {host.name}\): .* -> shutoff", after=mark)
    event_at = float(re.search(r"event at ([0-9.]+)", line).group(1))
    print(f"events flow again: event -> status.instance {1000 * (at - event_at):.1f} ms")


def test_metrics_samples_and_per_project_messages(
    lab_hosts, admin_user, virt_domains, start_watcher, listen
):
    host = lab_hosts[0]
    mine, theirs = Project.objects.create(name="wx-mine"), Project.objects.create(name="wx-other")
    a, b = virt_domains(host), virt_domains(host)
    a.create()
    b.create()
    ia = _adopt(admin_user, host, a, project=mine)
    ib = _adopt(admin_user, host, b, project=theirs)
    admins, own = listen(ADMIN_GROUP), listen(project_group(mine.pk))
    watcher = start_watcher()
    _wait_watching(watcher, host)

    def ours(m):
        return m["type"] == "status.metrics" and m["host"] == host.pk

    _, admin_msg = admins.wait_for(ours, timeout=20)
    _, own_msg = own.wait_for(ours, timeout=20)
    assert {ia.pk, ib.pk} <= {e["id"] for e in admin_msg["instances"]}
    assert admin_msg["host_totals"]["instances"] >= 2
    assert [e["id"] for e in own_msg["instances"]] == [ia.pk]  # the other project's: never
    assert "host_totals" not in own_msg

    samples = wait_until(
        lambda: len(s := metrics.recent(metrics.INSTANCE, ia.pk)) >= 2 and s, timeout=20
    )
    for sample in samples:
        assert sample["cpu_percent"] >= 0
        assert 0 < sample["memory_used_bytes"] <= sample["memory_total_bytes"]
        assert sample["memory_total_bytes"] == 64 * 1024 * 1024
        assert all(sample[k] >= 0 for k in ("disk_read_bps", "net_rx_bps", "net_tx_bps"))
    assert len(metrics.recent(metrics.INSTANCE, ia.pk)) <= metrics.capacity()
    totals = metrics.recent(metrics.HOST, host.pk)[-1]
    assert totals["instances"] >= 2 and totals["memory_used_bytes"] > 0
    print(f"\nsample of {ia.name}: {samples[-1]}\nhost totals: {totals}")


def test_host_offline_and_back_is_published(lab, lab_hosts, virt_domains, start_watcher, listen):
    host, lab_host = lab_hosts[1], lab.hosts[1]
    watcher = start_watcher()
    _wait_watching(watcher, host)
    admins = listen(ADMIN_GROUP)

    def host_msg(status):
        return lambda m: m["type"] == "status.host" and m["host"]["id"] == host.pk and m[
            "host"]["status"] == status  # fmt: skip

    mark = len(watcher.lines)
    stopping = time.time()
    lab_host.stop_libvirtd()
    try:
        try:
            at, _ = admins.wait_for(host_msg("offline"), timeout=30)
        except AssertionError:
            print("\n".join(line for _, line in watcher.lines))
            raise
        assert Host.objects.get(pk=host.pk).status == "offline"
        print(f"\nlibvirtd stop began -> host offline published in {1000 * (at - stopping):.0f} ms")
    finally:
        lab_host.start_libvirtd()
    started = time.time()
    at, _ = admins.wait_for(host_msg("online"), timeout=40)
    assert Host.objects.get(pk=host.pk).status == "online"
    print(f"libvirtd back -> host online published in {1000 * (at - started):.0f} ms")
    _wait_watching(watcher, host, after=mark)  # subscribed again: events flow
    dom = virt_domains(host)
    wait_until(lambda: dom.name() in _unmanaged(host), timeout=5)
