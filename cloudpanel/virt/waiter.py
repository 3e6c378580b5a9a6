"""Wait for a domain to reach a state, woken by libvirt's lifecycle events.

One lifecycle callback per host URI is registered on the process's pooled connection (the
pool runs libvirt's default event loop thread, which delivers the events). A waiter is armed
before the state is first read, so an event between that read and the wait is never missed:
the event sets the waiter's flag and the next read sees the new state. A slow poll
(FALLBACK_POLL) stays behind the events, so a lost event or a dropped subscription costs at
most that long, never a hung job; each poll also re-registers on a reconnected pool
connection (libvirt keeps no callbacks across connections).

`wait_for_state` says why it returned (Waited.woke): "initial" (already there), "event",
"poll" or "timeout".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import libvirt

from .domains import domain_state
from .errors import VirtError
from .pool import get_pool

log = logging.getLogger(__name__)

FALLBACK_POLL = 1.0  # seconds between state reads when no event comes
UNSUBSCRIBED_POLL = 0.25  # a host whose events cannot be had (test:///, old daemon)


@dataclass(frozen=True)
class Waited:
    reached: bool
    state: str | None  # the last state read
    woke: str  # "initial", "event", "poll" or "timeout"
    events: int  # lifecycle events seen for the domain while waiting

    def __bool__(self) -> bool:
        return self.reached


@dataclass
class _Subscription:
    conn: libvirt.virConnect
    callback_id: int


class _Waiter:
    __slots__ = ("flag", "events")

    def __init__(self) -> None:
        self.flag = threading.Event()
        self.events = 0


class _Registry:
    """Waiters by (uri, domain name) and one lifecycle subscription per URI, per process."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._subscriptions: dict[str, _Subscription] = {}
        self._waiters: dict[tuple[str, str], set[_Waiter]] = {}

    def _after_fork(self) -> None:
        # A prefork child inherits the parent's dicts; its connections are its own.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._subscriptions = {}
            self._waiters = {}

    def arm(self, uri: str, name: str) -> _Waiter:
        self._after_fork()
        waiter = _Waiter()
        with self._lock:
            self._waiters.setdefault((uri, name), set()).add(waiter)
        return waiter

    def disarm(self, uri: str, name: str, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get((uri, name))
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[(uri, name)]

    def subscription(self, uri: str) -> _Subscription | None:
        return self._subscriptions.get(uri)

    def unsubscribe(self, uri: str) -> None:
        """Drop our callback from `uri`'s connection (the next wait registers again)."""
        with self._lock:
            sub = self._subscriptions.pop(uri, None)
        if sub is not None:
            _deregister_quietly(sub)

    def subscribe(self, uri: str) -> bool:
        """Make sure the pool's current connection to `uri` carries our callback.

        No lock is held across libvirt calls: the callback runs on the event loop thread
        and takes the lock too."""
        self._after_fork()
        try:
            conn = get_pool().get(uri)
        except VirtError:
            return False  # the state read that follows reports the host's problem
        with self._lock:
            current = self._subscriptions.get(uri)
        if current is not None and current.conn is conn:
            return True
        try:
            callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, uri
            )
        except libvirt.libvirtError as exc:
            log.info("no lifecycle events from %s (%s): polling", uri, exc)
            return False
        with self._lock:
            current = self._subscriptions.get(uri)
            if current is not None and current.conn is conn:
                stale = _Subscription(conn, callback_id)  # another thread won the race
            else:
                stale = current  # on a connection the pool has replaced, or None
                self._subscriptions[uri] = _Subscription(conn, callback_id)
        if stale is not None:
            _deregister_quietly(stale)
        return True

    def _on_lifecycle(self, _conn, dom, _event, _detail, uri) -> None:
        # On libvirt's event loop thread: only wake the waiters, never call libvirt here.
        try:
            name = dom.name()
        except libvirt.libvirtError:
            return
        with self._lock:
            waiters = list(self._waiters.get((uri, name), ()))
        for waiter in waiters:
            waiter.events += 1
            waiter.flag.set()


def _deregister_quietly(sub: _Subscription) -> None:
    try:
        sub.conn.domainEventDeregisterAny(sub.callback_id)
    except libvirt.libvirtError:
        pass  # a closed connection took its callbacks with it


registry = _Registry()


def wait_for_state(
    uri: str,
    name: str,
    states: Iterable[str],
    timeout: float,
    *,
    check: Callable[[], None] | None = None,
    fallback: float | None = None,
) -> Waited:
    """Wait until domain `name` on `uri` is in one of `states` (DOMAIN_STATES' words), at
    most `timeout` seconds. `check` runs before every wait (a job's cancellation check: what
    it raises ends the wait). `fallback`: seconds between polls, FALLBACK_POLL by default."""
    wanted = set(states)
    fallback = FALLBACK_POLL if fallback is None else fallback
    deadline = time.monotonic() + timeout
    waiter = registry.arm(uri, name)
    try:
        subscribed = registry.subscribe(uri)
        state = domain_state(uri, name)  # after arming: an event from now on is not lost
        if state in wanted:
            return Waited(True, state, "initial", waiter.events)
        while True:
            if check is not None:
                check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Waited(False, state, "timeout", waiter.events)
            interval = fallback if subscribed else min(fallback, UNSUBSCRIBED_POLL)
            fired = waiter.flag.wait(min(interval, remaining))
            waiter.flag.clear()  # before the read: a later event wakes the next wait
            if not fired:
                subscribed = registry.subscribe(uri)  # the pool may have reconnected
            state = domain_state(uri, name)
            if state in wanted:
                return Waited(True, state, "event" if fired else "poll", waiter.events)
    finally:
        registry.disarm(uri, name, waiter)


__all__ = ["FALLBACK_POLL", "Waited", "wait_for_state"]
