"""Per-process libvirt connection pool: one connection per host URI.

Connections are opened lazily in the process that uses them (so Celery prefork children never
share a parent's socket), kept alive by libvirt's keepalive (which needs the event loop thread
started here), reopened when the daemon restarts, and opened under a timeout so that one dead
host never blocks work on the others.

Bounded under faults: libvirt.open has no timeout, so it runs in a helper thread we stop
waiting for. At most one such open is pending per URI: while it is, further attempts fail
at once instead of starting another thread and socket, and when it finally ends its
connection is kept (if nobody closed the URI meanwhile) or closed. TCP transports are probed
with a plain connect under the timeout first, so a black-holed address never leaves an open
stuck in connect(); a peer that accepts and stays silent keeps its one pending open until
the peer closes or resets the connection.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import libvirt

from .errors import AlreadyExists, HostUnreachable, NotFound, OperationInvalid, VirtError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors that mean the connection itself is gone.
_CONNECTION_ERRORS = {
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
}
_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT,
}
_INVALID = {libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_OPERATION_FAILED}

# libvirt logs every error to stderr by default; we translate and report them ourselves.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def translate(exc: libvirt.libvirtError, uri: str | None = None) -> VirtError:
    """Turn a libvirtError into one of our exceptions with a readable message."""
    code = exc.get_error_code()
    message = exc.get_error_message() or str(exc)
    if code in _NOT_FOUND:
        return NotFound(message)
    if code in _INVALID:
        return OperationInvalid(message)
    if code in (libvirt.VIR_ERR_DOM_EXIST,) or "already exists" in message:
        return AlreadyExists(message)
    if code in _CONNECTION_ERRORS:
        where = f" ({uri})" if uri else ""
        return HostUnreachable(f"{message}{where}")
    return VirtError(message)


class _EventLoop:
    """libvirt's default event loop in a daemon thread: needed for keepalive and events."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.lock = threading.Lock()

    def ensure_running(self) -> None:
        with self.lock:
            if self.pid == os.getpid():
                return
            libvirt.virEventRegisterDefaultImpl()
            thread = threading.Thread(target=self._run, name="libvirt-events", daemon=True)
            thread.start()
            self.pid = os.getpid()

    @staticmethod
    def _run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()


event_loop = _EventLoop()


# Transports that open a TCP connection themselves, with libvirt's default ports.
_TCP_PORTS = {"qemu+tcp": 16509, "qemu+tls": 16514}


def _probe(uri: str, timeout: float) -> None:
    """For TCP transports, check within `timeout` that something accepts the connection.

    An address that drops packets then costs a probe that times out, never a libvirt open
    stuck in connect() in a helper thread. (A peer that accepts and then stays silent still
    passes: that case is bounded by the pool's one-pending-open-per-URI rule.)
    """
    parts = urlsplit(uri)
    port = _TCP_PORTS.get(parts.scheme)
    if port is None or not parts.hostname:
        return
    address = (parts.hostname, parts.port or port)
    try:
        socket.create_connection(address, timeout=timeout).close()
    except TimeoutError as exc:
        raise HostUnreachable(f"Timed out after {timeout:g} s connecting to {uri}") from exc
    except OSError as exc:
        raise HostUnreachable(f"Cannot connect to {uri}: {exc.strerror or exc}") from exc


class _Opening:
    """One libvirt.open running in its helper thread: libvirt has no connect timeout."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.since = time.time()
        self.done = threading.Event()
        self.conn: libvirt.virConnect | None = None
        self.error: libvirt.libvirtError | None = None
        self.abandoned = False  # the caller gave up waiting: the late result is not theirs
        self.cancelled = False  # pool.close(uri) ran meanwhile: never keep the late result

    def run(self) -> None:
        try:
            self.conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            self.error = exc


class ConnectionPool:
    def __init__(self, connect_timeout: float = 10.0, keepalive_interval: int = 5) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self._pid = os.getpid()
        self._conns: dict[str, libvirt.virConnect] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._opening: dict[str, _Opening] = {}  # at most one pending open per URI
        self._guard = threading.Lock()
        self.opened = 0  # how many connections this process has opened (tests, bench)

    def _reset_after_fork(self) -> None:
        # A forked child inherits the parent's dict but must never use its sockets.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._conns = {}
            self._locks = {}
            self._opening = {}
            self._guard = threading.Lock()

    def _lock_for(self, uri: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(uri, threading.Lock())

    def get(self, uri: str) -> libvirt.virConnect:
        """The open connection to `uri`, opened or reopened as needed."""
        self._reset_after_fork()
        conn = self._conns.get(uri)
        if conn is not None and _alive(conn):
            return conn
        with self._lock_for(uri):
            conn = self._conns.get(uri)
            if conn is not None and _alive(conn):
                return conn
            if conn is not None:
                self._discard(uri)
            if not uri.startswith("test:"):
                event_loop.ensure_running()
            conn = self._open(uri)
            self._keep(uri, conn)
            return conn

    def pending(self, uri: str) -> float | None:
        """When the still-pending open of `uri` started (time.time()), or None."""
        opening = self._opening.get(uri)
        return opening.since if opening is not None else None

    def _open(self, uri: str) -> libvirt.virConnect:
        """Open `uri` within connect_timeout; never more than one attempt pending per URI."""
        with self._guard:
            pending = self._opening.get(uri)
        if pending is not None:
            since = time.strftime("%H:%M:%S", time.localtime(pending.since))
            raise HostUnreachable(
                f"Still connecting to {uri} since {since} ({time.time() - pending.since:.0f} s): "
                "the host accepted the connection but has not answered; no new attempt is made "
                "until that one ends"
            )
        _probe(uri, self.connect_timeout)
        opening = _Opening(uri)
        with self._guard:
            self._opening[uri] = opening
        thread = threading.Thread(
            target=self._run_open, args=(opening,), name=f"libvirt-open {uri}", daemon=True
        )
        thread.start()
        if not opening.done.wait(self.connect_timeout):
            with self._guard:
                opening.abandoned = not opening.done.is_set()
            if opening.abandoned:
                raise HostUnreachable(
                    f"Timed out after {self.connect_timeout:g} s connecting to {uri}"
                )
        if opening.error is not None:
            exc = opening.error
            raise HostUnreachable(f"Cannot connect to {uri}: {exc.get_error_message() or exc}")
        assert opening.conn is not None
        return opening.conn

    def _run_open(self, opening: _Opening) -> None:
        """The helper thread: open, then hand the result over or, if abandoned, settle it."""
        opening.run()
        with self._guard:
            if self._opening.get(opening.uri) is opening:
                del self._opening[opening.uri]
            opening.done.set()
            late = opening.abandoned
            keep = late and not opening.cancelled and opening.uri not in self._conns
        if not late or opening.conn is None:
            return
        if keep and self._pid == os.getpid():
            log.info("late connection to %s kept in the pool", opening.uri)
            self._keep(opening.uri, opening.conn)
        else:
            _close_quietly(opening.conn)

    def _keep(self, uri: str, conn: libvirt.virConnect) -> None:
        if not uri.startswith("test:"):
            try:
                conn.setKeepAlive(self.keepalive_interval, 3)
            except libvirt.libvirtError:
                log.debug("keepalive not supported on %s", uri)
        with self._guard:
            self._conns[uri] = conn
            self.opened += 1

    def call(self, uri: str, fn: Callable[[libvirt.virConnect], T]) -> T:
        """Run fn(conn); if the connection dropped underneath, reconnect once and retry."""
        for attempt in (1, 2):
            conn = self.get(uri)
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                # A dead connection (daemon restarted, socket dropped): reopen and retry once.
                if attempt == 1 and not _alive(conn):
                    log.info("connection to %s dropped, reconnecting", uri)
                    self._discard(uri)
                    continue
                raise translate(exc, uri) from exc
        raise AssertionError("unreachable")

    def _discard(self, uri: str) -> None:
        with self._guard:
            conn = self._conns.pop(uri, None)
        if conn is not None:
            _close_quietly(conn)

    def close(self, uri: str | None = None) -> None:
        self._reset_after_fork()
        with self._guard:
            for opening in self._opening.values():
                if uri is None or opening.uri == uri:
                    opening.cancelled = True  # a late connection is closed, not kept
        for key in [uri] if uri else list(self._conns):
            self._discard(key)


def _close_quietly(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


_pool: ConnectionPool | None = None


def get_pool() -> ConnectionPool:
    """The process-wide pool, configured from Django settings when they are available."""
    global _pool
    if _pool is None:
        timeout = 10.0
        try:
            from django.conf import settings

            timeout = float(getattr(settings, "LIBVIRT_CONNECT_TIMEOUT", timeout))
        except Exception:  # settings not configured: a script or benchmark
            pass
        _pool = ConnectionPool(connect_timeout=timeout)
    return _pool
