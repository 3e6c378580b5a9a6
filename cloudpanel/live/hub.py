"""One channel-layer channel per event loop (server process) for every live socket in it.

Without it each socket had a channel of its own: a group message to a thousand sockets was
a thousand deliveries in channels-redis (one bundled Redis entry, but a thousand receive
loops woken and a thousand buffers filled), about 40% of the server's CPU per event. Here a
socket registers with the hub for its groups (Hub.join); the hub joins a channel-layer group
when its first local member does and leaves it after the last one, so the layer delivers an
event once per process and the hub hands it to the local members of its group.

Messages name their group ("group": the publisher, cloudpanel.live.publisher, and
cloudpanel.projects.events add it). A member's hub_message(message) is called synchronously,
in the order the hub received the messages (one receive loop: an "access.changed" for
user.<id> comes through the same channel as the events, so it is handled before any event
published after it); a member never awaits its socket there (AccessCheckedConsumer queues).

Losses: the hub's list in Redis holds at most CHANNEL_LAYERS' channel_capacity for "hub.*"
messages; past that channels-redis drops new ones for the whole process (logged at INFO by
channels_redis). When the receive loop fails (Redis down or restarted: group memberships
may be gone with it, messages may have been lost), the hub joins its groups again and asks
every member to resync (hub_resync: a fresh snapshot, or a close the client reconnects
after). A restart that redis-py's own retries hide is seen by the Redis run id, checked
every WATCH_SECONDS. Memberships are renewed every REFRESH_SECONDS, well within
channels-redis' group expiry (a day), since the hub may outlive it.

Measured (`python -m bench events`, 1,000 admin sockets, 2 uvicorn workers on 2 CPUs, same
quiet machine): p95 event-to-client 395 ms and 462 ms server CPU per event before, 124 ms and
141 ms with the hub.

channels-redis lets one event loop at a time receive from a layer: one hub per process in
production. The hub stops when its last member leaves (tests close their loop after each).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import weakref

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "hub"  # CHANNEL_LAYERS' channel_capacity gives "hub.*" its own bound
LAYER_CONCURRENCY = 32  # group joins/leaves in flight at once (redis-py pool, see settings)
WATCH_SECONDS = 10.0
REFRESH_SECONDS = 3600.0
RETRY_SECONDS = (0.5, 5.0)  # first and longest wait before the layer is tried again

_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hub_for_loop(layer=None) -> Hub | None:
    """This event loop's hub on the channel layer (None without a layer)."""
    layer = layer or get_channel_layer()
    if layer is None:
        return None
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:  # settings changed the layer (tests)
        hub = _hubs[loop] = Hub(layer)
    return hub


class Hub:
    def __init__(self, layer):
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[str, set] = {}  # group -> local members
        self.joined: set[str] = set()  # groups the hub's channel is in at the layer
        self.received = 0
        self.recoveries = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: collections.Counter = collections.Counter()
        self._gate = asyncio.Semaphore(LAYER_CONCURRENCY)
        self._tasks: list[asyncio.Task] = []
        self._recovering = asyncio.Lock()
        self._identity = None
        self._unnamed_logged = False

    # Membership

    async def join(self, group: str, member) -> None:
        """Deliver `group` to `member` from now on; returns once the layer has the hub in
        the group, so nothing published afterwards is missed."""
        await self._start()
        self.members.setdefault(group, set()).add(member)
        await self._settle(group)

    async def leave(self, group: str, member) -> None:
        members = self.members.get(group)
        if members is not None:
            members.discard(member)
            if not members:
                del self.members[group]
        try:
            await self._settle(group)
        except Exception as exc:  # Redis down: the group's expiry drops the hub's channel
            log.warning("hub could not leave %s: %s", group, exc)
        if not self.members and not self._lock_users:
            await self._stop()

    async def _settle(self, group: str) -> None:
        """Bring the layer's membership of `group` in line with the local members."""
        lock = self._locks.setdefault(group, asyncio.Lock())
        self._lock_users[group] += 1
        try:
            async with lock:
                wanted = bool(self.members.get(group))
                if wanted and group not in self.joined:
                    async with self._gate:
                        await self.layer.group_add(group, self.channel)
                    self.joined.add(group)
                elif not wanted and group in self.joined:
                    self.joined.discard(group)
                    async with self._gate:
                        await self.layer.group_discard(group, self.channel)
        finally:
            self._lock_users[group] -= 1
            if not self._lock_users[group]:
                del self._lock_users[group]
                self._locks.pop(group, None)

    # The receive loop

    async def _start(self) -> None:
        if self._tasks:
            return
        if self.channel is None:
            self.channel = await self.layer.new_channel(CHANNEL_PREFIX)
        if not self._tasks:
            self._tasks = [
                asyncio.ensure_future(self._receive_loop()),
                asyncio.ensure_future(self._watch()),
            ]

    async def _stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a cancelled blocking pop has been seen to hang in redis-py
            await asyncio.wait(tasks, timeout=5)

    async def _receive_loop(self) -> None:
        delay, lost = RETRY_SECONDS[0], False
        while True:
            if lost:
                lost = not await self.recover()
            if not lost:
                try:
                    message = await self.layer.receive(self.channel)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("live hub: the channel layer failed (%s); sockets resync", exc)
                    lost = True
            if lost:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_SECONDS[1])
                continue
            delay = RETRY_SECONDS[0]
            self.received += 1
            self.dispatch(message)

    def dispatch(self, message: dict) -> None:
        group = message.get("group")
        members = self.members.get(group)
        if group is None and not self._unnamed_logged:
            self._unnamed_logged = True  # a sender that does not name the group reaches no one
            log.warning("live hub: a %r message without its group was dropped", message.get("type"))
        if not members:
            return
        for member in tuple(members):
            try:
                member.hub_message(message)
            except Exception:
                log.exception("live hub: a socket failed on a %r message", message.get("type"))

    async def recover(self) -> bool:
        """Join every group again and make every member resync; False while the layer is
        still down (the caller tries again)."""
        async with self._recovering:
            try:
                for group in sorted(self.joined):
                    async with self._gate:
                        await self.layer.group_add(group, self.channel)
                self._identity = await self._layer_identity()
            except Exception as exc:
                log.warning("live hub: the channel layer is still down: %s", exc)
                return False
            self.recoveries += 1
            for members in list(self.members.values()):
                for member in tuple(members):
                    try:
                        member.hub_resync()
                    except Exception:
                        log.exception("live hub: a socket failed to resync")
            log.warning("live hub: channel layer back; %d groups joined again, sockets resync",
                        len(self.joined))  # fmt: skip
            return True

    async def _watch(self) -> None:
        """Catch a Redis restart that redis-py's retries hid from the receive loop, and
        renew the hub's memberships before channels-redis' group expiry drops them."""
        refreshed = time.monotonic()
        with_retry = False
        while True:
            await asyncio.sleep(RETRY_SECONDS[0] if with_retry else WATCH_SECONDS)
            try:
                identity = await self._layer_identity()
            except asyncio.CancelledError:
                raise
            except Exception:
                with_retry = True  # down: the receive loop recovers, or the next look does
                continue
            lost = with_retry or (self._identity is not None and identity != self._identity)
            if self._identity is None:
                self._identity = identity
            if lost or time.monotonic() - refreshed > REFRESH_SECONDS:
                if lost:
                    ok = await self.recover()
                else:
                    ok = await self._refresh()
                with_retry = not ok
                if ok:
                    refreshed = time.monotonic()

    async def _refresh(self) -> bool:
        try:
            for group in sorted(self.joined):
                async with self._gate:
                    await self.layer.group_add(group, self.channel)
            return True
        except Exception as exc:
            log.warning("live hub: could not renew its groups: %s", exc)
            return False

    async def _layer_identity(self):
        """The run ids of the layer's Redis servers (None for another layer)."""
        connection = getattr(self.layer, "connection", None)
        if connection is None:
            return None
        ids = []
        for index in range(getattr(self.layer, "ring_size", 1)):
            info = await connection(index).info("server")
            ids.append(info.get("run_id"))
        return tuple(ids)
