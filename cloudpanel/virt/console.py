"""A running domain's consoles: where its VNC server listens, and its serial console stream.

The VNC endpoint is read from the live domain XML (the port QEMU really got from autoport,
the address it really listens on), never from what the panel once asked for.

The serial console is libvirt's console stream (virDomain.openConsole) on a non-blocking
virStream driven by libvirt's event loop (the pool runs it): its callbacks, in libvirt's
event thread, hand bytes to an asyncio queue; reading stops while that queue is full, so a
slow reader never grows memory. Nothing here blocks the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

import libvirt

from . import xmlutil
from .errors import NotFound, OperationInvalid, VirtError
from .pool import event_loop, get_pool, translate

log = logging.getLogger(__name__)

# Addresses meaning "every interface": the server is then reached at the host's own address.
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})
READ_CHUNK = 64 * 1024
QUEUE_CHUNKS = 64  # at most this many chunks wait for the reader (reading pauses beyond)


@dataclass(frozen=True)
class VncEndpoint:
    port: int
    listen: str  # the address in the live XML; "" when it listens everywhere


def _active_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    dom = conn.lookupByName(name)
    if not dom.isActive():
        raise OperationInvalid(f"Domain {name} is not running.")
    return dom


def parse_vnc_endpoint(xml: str) -> VncEndpoint:
    """The VNC server of a running domain's live XML (OperationInvalid when it has none)."""
    root = xmlutil.parse(xml)
    graphics = root.find("devices/graphics[@type='vnc']")
    if graphics is None:
        raise OperationInvalid("The domain has no VNC display.")
    listen = graphics.get("listen")
    node = graphics.find("listen")
    if node is not None:
        kind = node.get("type", "address")
        if kind not in ("address", "network"):  # a unix socket or none: no TCP to reach
            raise OperationInvalid(f"The domain's VNC display listens on a {kind}, not TCP.")
        listen = node.get("address", listen)
    try:
        port = int(graphics.get("port", "-1"))
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise OperationInvalid("The domain's VNC display has no port (is it running?).")
    return VncEndpoint(port=port, listen=(listen or "").strip())


def vnc_endpoint(uri: str, name: str) -> VncEndpoint:
    """Where the running domain's VNC server listens, from its live XML."""
    xml = get_pool().call(uri, lambda conn: _active_domain(conn, name).XMLDesc(0))
    return parse_vnc_endpoint(xml)


class SerialConsole:
    """The domain's serial console as an async byte stream: read() and write(), then close().

    Opened with FORCE: a console left open by a closed browser tab (or another viewer) is
    taken over instead of refusing the new one, as `virsh console --force` does.
    """

    def __init__(self, stream: libvirt.virStream, loop: asyncio.AbstractEventLoop):
        self._stream = stream
        self._loop = loop
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        # Writable until a send says otherwise: only then is the WRITABLE event wanted (a
        # stream that can take data fires it without end).
        self._writable = asyncio.Event()
        self._writable.set()
        self._want_write = False
        self._lock = threading.Lock()  # the event thread and the loop both touch the stream
        self._closed = False
        self._reading = True
        self._eof = False
        self._watching = True  # our callback is registered with the stream
        self._pending = 0  # chunks handed to the queue and not yet read (under _lock)

    # -- opening --------------------------------------------------------------------------

    @classmethod
    async def open(cls, uri: str, name: str) -> SerialConsole:
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(cls._open, uri, name, loop)

    @classmethod
    def _open(cls, uri: str, name: str, loop: asyncio.AbstractEventLoop) -> SerialConsole:
        event_loop.ensure_running()  # the stream's callbacks run on it
        pool = get_pool()

        def op(conn: libvirt.virConnect) -> SerialConsole:
            dom = _active_domain(conn, name)
            stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            try:
                dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            except libvirt.libvirtError:
                _abort_quietly(stream)
                raise
            console = cls(stream, loop)
            stream.eventAddCallback(console._events(), console._on_event, None)
            return console

        return pool.call(uri, op)

    # -- libvirt's event thread -----------------------------------------------------------

    def _events(self) -> int:
        wanted = libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP
        if self._reading and not self._eof:
            wanted |= libvirt.VIR_STREAM_EVENT_READABLE
        if self._want_write:
            wanted |= libvirt.VIR_STREAM_EVENT_WRITABLE
        return wanted

    def _on_event(self, stream, events: int, _opaque) -> None:
        if self._closed or self._eof:
            return
        if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
            self._want_write = False
            self._loop.call_soon_threadsafe(self._writable.set)
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            self._drain_stream()
        if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
            self._finish_reading()
        if self._eof:
            self._unwatch()  # an ended stream would fire its events again and again
        else:
            self._update_events()

    def _drain_stream(self) -> None:
        ended = False
        with self._lock:
            while not self._closed and self._pending < QUEUE_CHUNKS:
                try:
                    data = self._stream.recv(READ_CHUNK)
                except libvirt.libvirtError as exc:
                    log.info("serial console stream ended: %s", exc.get_error_message())
                    data = b""
                if data == -2:  # nothing more for now
                    return
                if not data:
                    ended = True
                    break
                self._pending += 1
                self._loop.call_soon_threadsafe(self._queue.put_nowait, data)
            else:
                # The reader is behind: stop reading until it catches up (back-pressure).
                self._reading = False
        if ended:
            self._finish_reading()

    def _finish_reading(self) -> None:
        if self._eof:
            return  # the end was handed over already
        self._eof = True
        self._loop.call_soon_threadsafe(self._queue.put_nowait, b"")
        self._loop.call_soon_threadsafe(self._writable.set)  # a blocked writer gives up too

    def _unwatch(self) -> None:
        with self._lock:
            if not self._watching:
                return
            self._watching = False
            try:
                self._stream.eventRemoveCallback()
            except libvirt.libvirtError:
                pass

    def _update_events(self) -> None:
        with self._lock:
            if self._closed or not self._watching:
                return
            try:
                self._stream.eventUpdateCallback(self._events())
            except libvirt.libvirtError:
                pass  # the stream is going away; its hangup event follows

    # -- the asyncio side -----------------------------------------------------------------

    async def read(self) -> bytes:
        """The next bytes from the guest; b"" once the console is gone."""
        data = await self._queue.get()
        if not data:
            self._queue.put_nowait(b"")  # every later read sees the end too
            return b""
        with self._lock:
            self._pending -= 1
            resume = not self._reading and self._pending <= QUEUE_CHUNKS // 2
            if resume:
                self._reading = True
        if resume:
            await asyncio.to_thread(self._update_events)
        return data

    async def write(self, data: bytes) -> None:
        """Send bytes to the guest's serial port, waiting while the stream is full."""
        view = memoryview(data)
        while view and not self._eof:
            with self._lock:
                if self._closed:
                    return
                try:
                    sent = self._stream.send(bytes(view))
                except libvirt.libvirtError as exc:
                    raise translate(exc) from exc
            if sent == -2:
                self._writable.clear()
                self._want_write = True
                self._update_events()
                await self._writable.wait()
                continue
            view = view[sent:]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._watching:
                self._watching = False
                try:
                    self._stream.eventRemoveCallback()
                except libvirt.libvirtError:
                    pass
        _abort_quietly(self._stream)  # outside the lock: the event thread may want it


def _abort_quietly(stream: libvirt.virStream) -> None:
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass


async def open_serial(uri: str, name: str) -> SerialConsole:
    """The running domain's serial console (NotFound, OperationInvalid or VirtError)."""
    return await SerialConsole.open(uri, name)


__all__ = [
    "NotFound",
    "OperationInvalid",
    "SerialConsole",
    "VirtError",
    "VncEndpoint",
    "open_serial",
    "parse_vnc_endpoint",
    "vnc_endpoint",
]
