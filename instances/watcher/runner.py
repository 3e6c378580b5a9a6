"""The watcher process: leases, one HostWatch per owned host, and their threads.

Threads of one process:
- the main thread (Watcher.run): every `poll` seconds re-reads the host list, renews the
  leases it holds, drops the hosts it lost (or that were deleted or changed URI) and takes
  the leases of hosts nobody owns;
- libvirt's event loop (cloudpanel.virt.pool.event_loop): callbacks only queue events;
- per owned host, an event worker that applies queued events to the database, and a
  connection thread that (re)subscribes, reports the host's transitions through the hosts
  services and runs the metrics sweeps. A slow host or database therefore stalls only its
  own host's threads, never libvirt's loop nor the other hosts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

from cloudpanel import virt
from cloudpanel.virt.events import ConnectionClosed, DomainEvent, HostSubscription
from cloudpanel.virt.pool import event_loop
from hosts.connection import connection_uri
from hosts.models import Host
from hosts.services import host_check_health

from ..reconcile import ReconcileReport, reconcile_host
from .apply import UNMANAGED, apply_event, refresh_unmanaged
from .lease import Leases
from .sweep import Sweeper

log = logging.getLogger("instances.watcher")

# Hosts a watcher follows: those online, and those that went away (it reconnects to them
# and reports their return). Never reached (error, unknown) is left to the health checks.
WATCHED_STATUSES = (Host.Status.ONLINE, Host.Status.OFFLINE)
QUEUE_SIZE = 10_000  # events waiting per host; beyond, the host is reconciled instead
BATCH = 500
RETRY_MAX = 10.0  # seconds between reconnect attempts, at most


def _uri(host: Host) -> str | None:
    try:
        return connection_uri(host)
    except virt.VirtError:
        return None


class HostWatch:
    """One owned host: its subscription, event worker and metrics sweeps."""

    def __init__(self, host: Host, uri: str, leases: Leases, *, stats_interval: float) -> None:
        self.host = host
        self.uri = uri
        self.leases = leases
        self.stats_interval = stats_interval
        self.events: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self.stopping = threading.Event()
        self.wake = threading.Event()  # the connection closed, or stop() ran
        self.overflowed = threading.Event()
        self.subscription: HostSubscription | None = None
        self.sweeper = Sweeper()
        self.sweeps = 0
        self._threads = [
            threading.Thread(
                target=self._guard,
                args=(self._connection_loop,),
                daemon=True,
                name=f"watch-conn-{host.pk}",
            ),
            threading.Thread(
                target=self._guard,
                args=(self._apply_loop,),
                daemon=True,
                name=f"watch-events-{host.pk}",
            ),
        ]

    # ---- control (main thread)

    def start(self) -> HostWatch:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop at once: nothing is published from now on (owned is false); the threads end
        by themselves (a connect attempt may take up to the connect timeout)."""
        self.stopping.set()
        self.wake.set()
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            subscription.close()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    @property
    def owned(self) -> bool:
        return not self.stopping.is_set() and self.leases.holds(self.host.pk)

    # ---- libvirt's loop thread: queue only

    def deliver(self, item: DomainEvent | ConnectionClosed) -> None:
        if isinstance(item, ConnectionClosed):
            self.wake.set()
            return
        try:
            self.events.put_nowait(item)
        except queue.Full:
            self.overflowed.set()  # too many to queue: the worker reconciles the host

    # ---- threads

    def _guard(self, loop) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    loop()
                    return
                except Exception:
                    log.exception(
                        "host %s: %s failed; restarting it", self.host.name, loop.__name__
                    )
                    self.stopping.wait(1.0)
        finally:
            connection.close()  # this thread's own database connection

    def _apply_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                batch = [self.events.get(timeout=1.0)]
            except queue.Empty:
                batch = []
            while batch and len(batch) < BATCH:
                try:
                    batch.append(self.events.get_nowait())
                except queue.Empty:
                    break
            overflowed = self.overflowed.is_set()
            if not batch and not overflowed:
                continue
            if not self.owned:
                continue  # lost the lease: the new owner reports these
            close_old_connections()
            if overflowed:
                self.overflowed.clear()
                self._reconcile("event queue overflowed")
            unmanaged = False
            for event in batch:
                if apply_event(self.host, self.uri, event) == UNMANAGED:
                    unmanaged = True
            if unmanaged:
                refresh_unmanaged(self.host, self.uri)

    def _connection_loop(self) -> None:
        attempt = 0
        next_sweep = time.monotonic() + self.stats_interval
        while not self.stopping.is_set():
            subscription = self.subscription
            if subscription is None or subscription.closed.is_set():
                if subscription is not None:
                    log.warning("host %s: connection lost", self.host.name)
                    subscription.close()
                    self.subscription = None
                    self._check_health()  # offline now, if it really is gone
                if not self._subscribe(attempt):
                    attempt += 1
                    self.stopping.wait(min(RETRY_MAX, 1.0 * 2 ** min(attempt, 4)))
                    continue
                attempt = 0
                self.sweeper = Sweeper()  # counters from before the gap are no base
                next_sweep = time.monotonic() + min(self.stats_interval, 1.0)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = max(next_sweep + self.stats_interval, now + 0.1)
                self._sweep()
            self.wake.wait(max(next_sweep - time.monotonic(), 0.0))
            self.wake.clear()

    # ---- the connection thread's steps

    def _subscribe(self, attempt: int) -> bool:
        close_old_connections()
        try:
            subscription = HostSubscription(
                self.uri, self.deliver, connect_timeout=settings.LIBVIRT_CONNECT_TIMEOUT
            ).open()
        except virt.VirtError as exc:
            if attempt == 0:
                log.warning("host %s: cannot subscribe: %s", self.host.name, exc)
                self._check_health()
            return False
        if self.stopping.is_set() or not self.owned:
            subscription.close()
            return False
        self.subscription = subscription
        if self.stopping.is_set():  # stop() ran in between and found no subscription to close
            self.subscription = None
            subscription.close()
            return False
        self._check_health()  # back online (and synced) if it was offline
        # Events while nobody listened (before this owner, or while the host was away).
        self._reconcile("subscribed")
        log.info("watching host %s (id %s) at %s", self.host.name, self.host.pk, self.uri)
        return True

    def _check_health(self) -> None:
        if not self.owned:
            return
        try:
            host = Host.objects.get(pk=self.host.pk)
        except Host.DoesNotExist:
            return
        # The one rule for a host's status (and its published transitions) is the services'.
        was = host.status
        self.host = host_check_health(host=host)
        if self.host.status != was:
            log.info("host %s: %s -> %s", host.name, was, self.host.status)

    def _reconcile(self, why: str) -> None:
        if not self.owned:
            return
        close_old_connections()
        report = ReconcileReport()
        try:
            reconcile_host(self.host, report)
        except virt.VirtError as exc:
            log.info("host %s: reconcile (%s) failed: %s", self.host.name, why, exc)
            return
        changed = report.missing + report.fixed + report.found
        if changed:
            log.info("host %s: reconcile (%s) updated instances %s", self.host.name, why, changed)

    def _sweep(self) -> None:
        if not self.owned or self.subscription is None:
            return
        close_old_connections()
        started = time.perf_counter()
        try:
            result = self.sweeper.sweep(self.host, self.uri)
            if result is not None and self.owned:  # checked again: the sweep took a while
                result.record_and_publish()
        except virt.VirtError as exc:
            log.info("host %s: stats sweep failed: %s", self.host.name, exc)
            return
        except Exception:
            log.exception("host %s: stats sweep failed", self.host.name)
            return
        self.sweeps += 1
        if result is not None:
            log.debug(
                "host %s: swept %d instances in %.1f ms",
                self.host.name,
                len(result.samples),
                (time.perf_counter() - started) * 1000,
            )


class Watcher:
    """Owns hosts through leases and watches each; run() until stop()."""

    def __init__(
        self,
        *,
        leases: Leases | None = None,
        lease_seconds: float | None = None,
        stats_interval: float | None = None,
    ) -> None:
        from cloudpanel.live.metrics import client

        self.lease_seconds = float(lease_seconds or settings.WATCHER_LEASE_SECONDS)
        self.stats_interval = float(stats_interval or settings.WATCHER_STATS_INTERVAL)
        self.leases = leases or Leases(client(), self.lease_seconds)
        # Renew at least three times per lease, and look for new hosts every 2 s at most.
        self.poll = min(2.0, self.lease_seconds / 4)
        self.watches: dict[int, HostWatch] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        event_loop.ensure_running()
        log.info(
            "host watcher %s started (lease %.0f s, stats every %.1f s)",
            self.leases.token,
            self.lease_seconds,
            self.stats_interval,
        )
        try:
            while not self.stopped.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except Exception:
                    log.exception("watcher tick failed")
                self.stopped.wait(max(self.poll - (time.monotonic() - started), 0.05))
        finally:
            self.shutdown()

    def stop(self) -> None:
        self.stopped.set()

    def tick(self) -> None:
        close_old_connections()
        hosts = {h.pk: h for h in Host.objects.filter(status__in=WATCHED_STATUSES)}
        held = self.leases.renew(self.watches)
        for host_id, watch in list(self.watches.items()):
            host = hosts.get(host_id)
            # Lost the lease, deleted (or no longer watched), or a new URI: drop it.
            if host_id not in held or host is None or _uri(host) != watch.uri:
                why = "lease lost" if host_id not in held else "host changed"
                log.info("host %s: no longer watched here (%s)", watch.host.name, why)
                self._drop(host_id, release=host_id in held)
        for host_id, host in hosts.items():
            if host_id in self.watches:
                continue
            uri = _uri(host)
            if uri is None or not self.leases.acquire(host_id):
                continue
            self.watches[host_id] = HostWatch(
                host, uri, self.leases, stats_interval=self.stats_interval
            ).start()

    def _drop(self, host_id: int, *, release: bool) -> None:
        watch = self.watches.pop(host_id)
        if release:
            self.leases.release(host_id)  # before stop(): holds() is then false at once
        else:
            self.leases.forget(host_id)
        watch.stop()

    def shutdown(self) -> None:
        watches = list(self.watches.values())
        for host_id in list(self.watches):
            self._drop(host_id, release=True)
        deadline = time.monotonic() + 5.0
        for watch in watches:
            watch.join(max(deadline - time.monotonic(), 0.0))
        log.info("host watcher %s stopped", self.leases.token)
