"""Console sockets: VNC (noVNC) and serial (xterm.js), each opened with a ticket.

/ws/instances/<uuid>/console/?ticket=... proxies the instance's VNC server: a TCP
connection straight to it (TCP_NODELAY), bytes pumped both ways as binary frames. Nothing
goes through Redis: these consumers have no channel layer. /ws/instances/<uuid>/serial/
carries libvirt's console stream of the guest's first serial port the same way.

Checks (instances.consoles.console_open_check) run before the handshake is answered: the
session user, the ticket (redeemed: single use), its user and instance, and the user's
access now. The Origin was checked before this consumer runs (SameOriginValidator wraps
every socket). A refusal closes the handshake with 4401, 4403 or 4404 and nothing more:
the reason goes to the log only. While a console stays open, access is checked again every
RECHECK_SECONDS.

These consumers run their own receive loop instead of Channels' dispatch: that one makes a
task per message and a trip to a thread pool (closing old database connections) before
every handler, which a console's stream of small frames pays for in latency.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from urllib.parse import parse_qs

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async

from cloudpanel import virt
from cloudpanel.virt.console import SerialConsole

from . import consoles

log = logging.getLogger("cloudpanel.consoles")

RECHECK_SECONDS = 30.0
CONNECT_TIMEOUT = 10.0
# What the VNC server sent is passed on as soon as it is there, one frame per chunk the
# event loop read (up to 256 KiB with uvloop; joining chunks into larger frames measured
# slower: one more copy, and a larger write waits for the socket more often). Reading from
# the server pauses while BUFFER_HIGH bytes wait for the browser.
BUFFER_HIGH = 1024 * 1024
BUFFER_LOW = 256 * 1024
CLOSE_CLEAN = 1000
CLOSE_GONE = 1011  # the console's other end failed


def _client_address(scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


def _ticket(scope) -> str:
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    values = query.get("ticket") or [""]
    return values[0]


class _ConsoleConsumer(AsyncConsumer):
    channel_layer_alias = None  # no channel layer: Redis only redeems the ticket
    kind = ""

    async def __call__(self, scope, receive, send):
        self.scope = scope
        self.base_send = send
        self.channel_layer = None
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        try:
            target = await self._check(scope)
            await self.open_backend(target)
        except consoles.ConsoleRefused as exc:
            log.warning(
                "%s console refused (%s) for %s from %s: %s",
                self.kind,
                exc.code,
                getattr(scope.get("user"), "username", "?") or "anonymous",
                _client_address(scope),
                exc,
            )
            await send({"type": "websocket.close", "code": exc.code})
            return
        except Exception:  # Redis or the database down, a bug: refused all the same
            log.exception("%s console failed to open from %s", self.kind, _client_address(scope))
            await send({"type": "websocket.close", "code": consoles.CLOSE_UNAVAILABLE})
            return
        self.target = target
        self.started = time.monotonic()
        self.sent = self.received = 0
        offered = scope.get("subprotocols") or []
        await send(
            {"type": "websocket.accept", "subprotocol": "binary" if "binary" in offered else None}
        )
        log.info(
            "%s console opened: user %s (%s) instance %s (%s) on host %s, from %s",
            self.kind,
            target.username,
            target.user_id,
            target.instance_name,
            target.instance_id,
            target.host_name,
            _client_address(scope),
        )
        pump = asyncio.create_task(self._pump_out())
        watch = asyncio.create_task(self._watch_access())
        try:
            await self._pump_in(receive)
        finally:
            pump.cancel()
            watch.cancel()
            for task in (pump, watch):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.close_backend()
            log.info(
                "%s console closed: user %s instance %s (%s), %.1f s, %d bytes out, %d in",
                self.kind,
                target.username,
                target.instance_name,
                target.instance_id,
                time.monotonic() - self.started,
                self.sent,
                self.received,
            )

    @database_sync_to_async
    def _check(self, scope) -> consoles.ConsoleTarget:
        return consoles.console_open_check(
            user=scope.get("user"),
            ticket=_ticket(scope),
            instance_uuid=scope["url_route"]["kwargs"]["uuid"],
        )

    async def _pump_in(self, receive) -> None:
        """Browser -> console, until the browser goes (or the close we sent completes)."""
        failed = False
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive" and not failed:
                data = message.get("bytes")
                if data is None:
                    data = (message.get("text") or "").encode()
                if data:
                    self.received += len(data)
                    try:
                        await self.write_backend(data)
                    except (OSError, virt.VirtError) as exc:
                        log.info(
                            "%s console of %s failed: %s", self.kind, self.target.instance_name, exc
                        )
                        failed = True  # what follows is dropped until the close completes
                        await self._close(CLOSE_GONE)
            elif kind == "websocket.disconnect":
                return

    async def _pump_out(self) -> None:
        """Console -> browser; each send waits until the socket took it (back-pressure)."""
        code = CLOSE_CLEAN
        try:
            while True:
                data = await self.read_backend()
                if not data:
                    break
                self.sent += len(data)
                await self.base_send({"type": "websocket.send", "bytes": data})
        except (OSError, virt.VirtError) as exc:
            log.info("%s console of %s ended: %s", self.kind, self.target.instance_name, exc)
            code = CLOSE_GONE
        await self._close(code)

    async def _watch_access(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            session_key = getattr(self.scope.get("session"), "session_key", None)
            allowed = await database_sync_to_async(consoles.console_still_allowed)(
                self.target, session_key
            )
            if not allowed:
                log.info(
                    "%s console of %s closed: user %s lost access",
                    self.kind,
                    self.target.instance_name,
                    self.target.username,
                )
                await self._close(consoles.CLOSE_REFUSED)
                await self.close_backend()
                return

    async def _close(self, code: int) -> None:
        with contextlib.suppress(Exception):  # the browser may be gone already
            await self.base_send({"type": "websocket.close", "code": code})

    # -- the console's other end (subclasses) -----------------------------------------

    async def open_backend(self, target: consoles.ConsoleTarget) -> None:
        raise NotImplementedError

    async def read_backend(self) -> bytes:
        raise NotImplementedError

    async def write_backend(self, data: bytes) -> None:
        raise NotImplementedError

    async def close_backend(self) -> None:
        raise NotImplementedError


class _VncConnection(asyncio.Protocol):
    """The TCP connection to the VNC server, read without copies: the chunks the event loop
    hands over are queued as they are and sent on one frame each. Reading pauses while
    BUFFER_HIGH bytes wait for the browser, and writes wait while the server's socket is
    full: back-pressure both ways."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.reading_paused = False
        self.ended = False
        self.error: Exception | None = None
        self.data_waiter: asyncio.Future | None = None
        self.drain_waiter: asyncio.Future | None = None
        self.writing_paused = False

    # -- the event loop's side
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes):
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered >= BUFFER_HIGH and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self):
        self.ended = True
        self._wake_reader()
        return False  # close our side too

    def connection_lost(self, exc):
        self.ended = True
        self.error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self):
        self.writing_paused = True

    def resume_writing(self):
        self.writing_paused = False
        self._wake_writer()

    def _wake_reader(self):
        waiter, self.data_waiter = self.data_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self):
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the consumer's side
    async def read(self) -> bytes:
        while not self.chunks:
            if self.ended:
                if self.error is not None:
                    raise self.error
                return b""
            self.data_waiter = self.loop.create_future()
            await self.data_waiter
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.reading_paused and self.buffered <= BUFFER_LOW and not self.ended:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        if self.ended:
            raise ConnectionResetError("the VNC server closed the connection")
        self.transport.write(data)
        while self.writing_paused and not self.ended:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class VncConsoleConsumer(_ConsoleConsumer):
    kind = "vnc"
    connection: _VncConnection | None = None

    async def open_backend(self, target: consoles.ConsoleTarget) -> None:
        try:
            address, port = await asyncio.to_thread(consoles.vnc_address, target)
            _, self.connection = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(_VncConnection, address, port),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError, virt.VirtError) as exc:
            raise consoles.ConsoleRefused(
                consoles.CLOSE_UNAVAILABLE, f"VNC server unreachable: {exc}"
            ) from exc

    async def read_backend(self) -> bytes:
        return await self.connection.read()

    async def write_backend(self, data: bytes) -> None:
        await self.connection.write(data)  # the VNC server's pace sets the browser's

    async def close_backend(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


class SerialConsoleConsumer(_ConsoleConsumer):
    kind = "serial"
    console: SerialConsole | None = None

    async def open_backend(self, target: consoles.ConsoleTarget) -> None:
        try:
            self.console = await consoles.serial_open(target)
        except virt.VirtError as exc:
            raise consoles.ConsoleRefused(
                consoles.CLOSE_UNAVAILABLE, f"serial console unavailable: {exc}"
            ) from exc

    async def read_backend(self) -> bytes:
        return await self.console.read()

    async def write_backend(self, data: bytes) -> None:
        await self.console.write(data)

    async def close_backend(self) -> None:
        console, self.console = self.console, None
        if console is not None:
            await asyncio.to_thread(console.close)
