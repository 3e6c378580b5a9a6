"""Fixtures for the host watcher: watcher processes, a channel-layer listener, tiny domains."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid

import pytest

LEASE_SECONDS = 3.0  # short, so a takeover test waits seconds, not the default 15
STATS_INTERVAL = 1.0


@pytest.fixture(autouse=True)
def _fast_hashers(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_watcher_keys(settings):
    """Leases and samples of an earlier test (ids restart) must not leak into this one."""
    from cloudpanel.live.metrics import client

    def clean():
        keys = [
            *client().scan_iter("cloudpanel:watcher:*"),
            *client().scan_iter("cloudpanel:metrics:*"),
        ]
        if keys:
            client().delete(*keys)

    clean()
    yield
    clean()


class GroupListener:
    """A channel-layer channel in some groups, read by a thread of its own: what a consumer
    in those groups would get, each message with the time.time() it arrived."""

    def __init__(self, groups: list[str]) -> None:
        self.groups = groups
        self.messages: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

        # A layer of its own: channels-redis lets only one event loop receive per instance.
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        channel = await layer.new_channel()
        for group in self.groups:
            await layer.group_add(group, channel)
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    message = await asyncio.wait_for(layer.receive(channel), 0.5)
                except TimeoutError:
                    continue
                self.messages.put((time.time(), message))
        finally:
            for group in self.groups:
                await layer.group_discard(group, channel)

    def start(self) -> GroupListener:
        self._thread.start()
        assert self._ready.wait(10), "channel layer listener did not start"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def wait_for(self, predicate, timeout: float = 5.0) -> tuple[float, dict]:
        """The first message (arrival time, message) matching predicate within timeout."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message in {timeout} s; got {seen[-5:]}")
            try:
                at, message = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if predicate(message):
                return at, message
            seen.append(message)

    def drain(self, seconds: float) -> list[dict]:
        """Everything that arrives within `seconds` (a bounded look, not a timing claim)."""
        deadline = time.monotonic() + seconds
        out = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.messages.get(timeout=left)[1])
            except queue.Empty:
                break
        return out


@pytest.fixture
def listen():
    listeners: list[GroupListener] = []

    def make(*groups: str) -> GroupListener:
        listener = GroupListener(list(groups)).start()
        listeners.append(listener)
        return listener

    yield make
    for listener in listeners:
        listener.stop()


@pytest.fixture
def start_watcher(start_watcher):
    """tests/conftest.py's, with a short lease and 1 s sweeps unless a test says otherwise."""

    def start(**extra: str):
        defaults = {
            "WATCHER_LEASE_SECONDS": str(LEASE_SECONDS),
            "WATCHER_STATS_INTERVAL": str(STATS_INTERVAL),
        }
        return start_watcher(**{**defaults, **extra})

    return start


def tiny_domain_xml(name: str, domain_type: str = "qemu", *, disk: str | None = None) -> str:
    """An OS-less guest of 64 MiB: firmware finds nothing to boot and idles. A user-mode NIC
    (no host tap: no bridge needed) and, when given, a disk from the pool."""
    disk_xml = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
        if disk
        else ""
    )
    return (
        f"<domain type='{domain_type}'><name>{name}</name><uuid>{uuid.uuid4()}</uuid>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>"
        f"<devices>{disk_xml}<interface type='user'><model type='virtio'/><rom enabled='no'/>"
        "</interface><memballoon model='virtio'/><graphics type='vnc' port='-1'"
        " listen='127.0.0.1'/></devices></domain>"
    )


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll predicate until it returns something true, within timeout (a bound only)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        time.sleep(interval)
