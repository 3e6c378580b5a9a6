"""Per-process libvirt connection pool: one connection per host URI.

Connections are opened lazily in the process that uses them (so Celery prefork children never
share a parent's socket), kept alive by libvirt's keepalive (which needs the event loop thread
started here), reopened when the daemon restarts, and opened under a timeout so that one dead
host never blocks work on the others.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

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


def _open_with_timeout(uri: str, timeout: float) -> libvirt.virConnect:
    """Open a connection, giving up after `timeout` seconds.

    libvirt has no connect timeout of its own (an SSH or TCP connect to a black-holed address
    can hang for minutes), so the open runs in a helper thread that we stop waiting for.
    """
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["conn"] = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"libvirt-open {uri}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise HostUnreachable(f"Timed out after {timeout:g} s connecting to {uri}")
    if "error" in result:
        exc = result["error"]
        assert isinstance(exc, libvirt.libvirtError)
        raise HostUnreachable(f"Cannot connect to {uri}: {exc.get_error_message() or exc}")
    conn = result["conn"]
    assert isinstance(conn, libvirt.virConnect)
    return conn


class ConnectionPool:
    def __init__(self, connect_timeout: float = 10.0, keepalive_interval: int = 5) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self._pid = os.getpid()
        self._conns: dict[str, libvirt.virConnect] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.opened = 0  # how many connections this process has opened (tests, bench)

    def _reset_after_fork(self) -> None:
        # A forked child inherits the parent's dict but must never use its sockets.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._conns = {}
            self._locks = {}
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
            conn = _open_with_timeout(uri, self.connect_timeout)
            if not uri.startswith("test:"):
                try:
                    conn.setKeepAlive(self.keepalive_interval, 3)
                except libvirt.libvirtError:
                    log.debug("keepalive not supported on %s", uri)
            self._conns[uri] = conn
            self.opened += 1
            return conn

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
        conn = self._conns.pop(uri, None)
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def close(self, uri: str | None = None) -> None:
        self._reset_after_fork()
        for key in [uri] if uri else list(self._conns):
            self._discard(key)


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
