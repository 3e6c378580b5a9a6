"""A host that accepts TCP but never answers costs a bounded number of threads and sockets,
however many health cycles run."""

import os
import selectors
import socket
import stat
import threading

import pytest

from cloudpanel import virt
from hosts import services, tasks
from hosts.models import Host
from hosts.services import host_create

CYCLES = 25


def open_sockets() -> int:
    """How many of this process's file descriptors are sockets."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += stat.S_ISSOCK(os.stat(f"/proc/self/fd/{fd}").st_mode)
        except FileNotFoundError:  # the fd of listdir itself, or one closed meanwhile
            pass
    return count


@pytest.fixture
def mute_listener():
    """127.0.0.1:PORT accepts connections, reads and drops what it gets, never answers.

    One thread and one selector; a connection the client closes is closed here too, so only
    connections the client keeps open stay open.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.1):
                if key.fileobj is server:
                    conn, _ = server.accept()
                    sel.register(conn, selectors.EVENT_READ)
                else:
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()

    thread = threading.Thread(target=serve, name="mute-listener", daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()


@pytest.fixture
def short_timeout(monkeypatch, settings):
    settings.LIBVIRT_CONNECT_TIMEOUT = 0.3
    monkeypatch.setattr(virt.get_pool(), "connect_timeout", 0.3)  # the pool already exists


def test_many_health_cycles_keep_threads_and_sockets_flat(
    transactional_db, mute_listener, short_timeout
):
    uri = f"qemu+tcp://127.0.0.1:{mute_listener}/system"
    host = host_create(name="mute", uri=uri, sync=False)
    pool = virt.get_pool()
    try:
        counts = []
        for _ in range(CYCLES):
            assert tasks.check_all_hosts() == 1  # never skipped: each check ends in time
            counts.append((threading.active_count(), open_sockets()))
        host.refresh_from_db()
        assert host.status == Host.Status.ERROR
        assert "Still connecting" in host.last_error
        assert pool.pending(uri) is not None  # the one open libvirt is stuck in
        # After the first cycle (its one pending open: a thread, a client and a server
        # socket), nothing more: not one thread or socket per cycle. (Fewer may show: the
        # process's other connections, the database's or Redis's, may close meanwhile.)
        first = counts[1]
        assert all(t <= first[0] and s <= first[1] for t, s in counts[1:]), counts
        assert counts[-1][0] <= counts[0][0] + 1 and counts[-1][1] <= counts[0][1] + 1, counts
    finally:
        pool.close(uri)


def test_the_pending_open_ends_when_the_peer_goes_away(db, short_timeout):
    # A peer that accepts, stays silent, then closes: the stuck open fails and is released.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    uri = f"qemu+tcp://127.0.0.1:{server.getsockname()[1]}/system"
    pool = virt.get_pool()
    with pytest.raises(virt.HostUnreachable, match="Timed out"):
        pool.get(uri)
    with pytest.raises(virt.HostUnreachable, match="Still connecting"):
        pool.get(uri)  # fails at once: no second thread, no second socket
    helper = next(t for t in threading.enumerate() if t.name == f"libvirt-open {uri}")
    conn, _ = server.accept()
    conn.close()
    server.close()
    helper.join(timeout=30)
    assert not helper.is_alive()
    assert pool.pending(uri) is None and uri not in pool._conns
    with pytest.raises(virt.HostUnreachable, match="Cannot connect"):
        pool.get(uri)  # a new attempt is made again, and the refused connect is reported


def test_a_host_still_being_checked_is_skipped(transactional_db, monkeypatch):
    host = host_create(name="demo", uri="test:///default")
    release = threading.Event()
    entered = threading.Event()
    real = services.host_check_health

    def slow_check(*, host):
        entered.set()
        release.wait()
        return real(host=host)

    monkeypatch.setattr(services, "host_check_health", slow_check)
    first = tasks.start_checks([host.pk])
    entered.wait()
    assert tasks.start_checks([host.pk]) == []  # the previous check is still running
    release.set()
    first[0].result()
    again = tasks.start_checks([host.pk])
    assert len(again) == 1
    again[0].result()


class GatedRelay:
    """127.0.0.1:PORT relays to a real libvirtd, but holds every client until opened."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.gate = threading.Event()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        self.gate.wait()
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        self.sockets.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.gate.set()
        for sock in self.sockets:
            sock.close()


@pytest.mark.libvirt
@pytest.mark.parametrize("closed_meanwhile", [False, True])
def test_a_late_connection_is_kept_or_closed(lab, short_timeout, closed_meanwhile):
    relay = GatedRelay(lab.hosts[0].tcp_port)
    uri = f"qemu+tcp://127.0.0.1:{relay.port}/system"
    pool = virt.get_pool()
    try:
        with pytest.raises(virt.HostUnreachable, match="Timed out"):
            pool.get(uri)  # the daemon is held back: our wait ends, libvirt's open goes on
        helper = next(t for t in threading.enumerate() if t.name == f"libvirt-open {uri}")
        if closed_meanwhile:
            pool.close(uri)  # e.g. the host was deleted or its URI changed
        relay.gate.set()
        helper.join(timeout=60)
        assert not helper.is_alive() and pool.pending(uri) is None
        if closed_meanwhile:
            assert uri not in pool._conns  # nobody wants it: closed, not leaked
        else:
            conn = pool._conns[uri]  # kept: the next health check finds it open
            assert pool.get(uri) is conn and conn.getLibVersion() > 0
    finally:
        pool.close(uri)
        relay.close()
