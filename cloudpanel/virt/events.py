"""Domain events of one host, as plain dataclasses, over a connection of their own.

A HostSubscription opens its own connection (a private ConnectionPool, so it gets the same
connect timeout, TCP probe and keepalive as the shared pool, but never shares its socket:
closing or losing it touches no other caller), registers for lifecycle, reboot, job
completed, block job and device removed events, and hands each one to `deliver` as a
DomainEvent. When the connection goes away (the daemon stops, the socket drops, keepalive
gives up) `deliver` gets one ConnectionClosed and `closed` is set; the caller opens a new
subscription when the host is back (libvirt does not re-register anything by itself).

`deliver` runs on libvirt's event loop thread: it must only queue the event, never do slow
work (a database write there would stall every connection's keepalive and events).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from .errors import HostUnreachable
from .hosts import DOMAIN_STATES
from .pool import ConnectionPool, event_loop

log = logging.getLogger(__name__)

LIFECYCLE = "lifecycle"
REBOOT = "reboot"
JOB_COMPLETED = "job_completed"
BLOCK_JOB = "block_job"
DEVICE_REMOVED = "device_removed"


@dataclass(frozen=True)
class DomainEvent:
    uri: str
    name: str  # the domain's name
    uuid: str
    kind: str  # LIFECYCLE, REBOOT, JOB_COMPLETED, BLOCK_JOB or DEVICE_REMOVED
    # The state the event leaves the domain in, in DOMAIN_STATES' words ("running",
    # "shutoff", ...); None when the event does not say (defined, undefined, and every kind
    # but lifecycle): read the domain's state then.
    state: str | None
    event: str  # lifecycle: "started", "stopped", ...; other kinds: the kind
    detail: str  # lifecycle: "booted", "destroyed", ...; block job: "vda copy completed", ...
    at: float  # time.time() when the event reached this process


@dataclass(frozen=True)
class ConnectionClosed:
    uri: str
    reason: str  # "error", "eof", "keepalive" or "client" (we closed it)
    at: float


Delivery = Callable[[DomainEvent | ConnectionClosed], None]

# Lifecycle event -> (its name, the libvirt state it leaves the domain in, or None).
_LIFECYCLE = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: ("defined", None),
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: ("undefined", None),
    libvirt.VIR_DOMAIN_EVENT_STARTED: ("started", libvirt.VIR_DOMAIN_RUNNING),
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: ("suspended", libvirt.VIR_DOMAIN_PAUSED),
    libvirt.VIR_DOMAIN_EVENT_RESUMED: ("resumed", libvirt.VIR_DOMAIN_RUNNING),
    libvirt.VIR_DOMAIN_EVENT_STOPPED: ("stopped", libvirt.VIR_DOMAIN_SHUTOFF),
    # The guest is shutting down: still running until "stopped" follows.
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: ("shutdown", libvirt.VIR_DOMAIN_SHUTDOWN),
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: ("pmsuspended", libvirt.VIR_DOMAIN_PMSUSPENDED),
    libvirt.VIR_DOMAIN_EVENT_CRASHED: ("crashed", libvirt.VIR_DOMAIN_CRASHED),
}


def _detail_names(event_name: str) -> dict[int, str]:
    """libvirt's detail constants of one lifecycle event (VIR_DOMAIN_EVENT_STOPPED_*)."""
    prefix = f"VIR_DOMAIN_EVENT_{event_name.upper()}_"
    return {
        getattr(libvirt, const): const[len(prefix) :].lower()
        for const in dir(libvirt)
        if const.startswith(prefix) and not const.endswith("_LAST")
    }


_DETAILS = {event: _detail_names(name) for event, (name, _state) in _LIFECYCLE.items()}


def _names(prefix: str) -> dict[int, str]:
    return {
        getattr(libvirt, c): c[len(prefix) :].lower()
        for c in dir(libvirt)
        if c.startswith(prefix) and not c.endswith("_LAST")
    }


_BLOCK_JOB_TYPES = _names("VIR_DOMAIN_BLOCK_JOB_TYPE_")
_BLOCK_JOB_STATUS = {
    libvirt.VIR_DOMAIN_BLOCK_JOB_COMPLETED: "completed",
    libvirt.VIR_DOMAIN_BLOCK_JOB_FAILED: "failed",
    libvirt.VIR_DOMAIN_BLOCK_JOB_CANCELED: "canceled",
    libvirt.VIR_DOMAIN_BLOCK_JOB_READY: "ready",
}
_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "eof",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "client",
}


def lifecycle_state(event: int) -> str | None:
    """The state (DOMAIN_STATES' words) a lifecycle event leaves the domain in, or None."""
    libvirt_state = _LIFECYCLE.get(event, ("", None))[1]
    return None if libvirt_state is None else DOMAIN_STATES[libvirt_state]


class HostSubscription:
    """Domain events of one host over a dedicated connection; see the module docstring."""

    def __init__(self, uri: str, deliver: Delivery, *, connect_timeout: float = 10.0) -> None:
        self.uri = uri
        self._deliver = deliver
        self._pool = ConnectionPool(connect_timeout=connect_timeout)
        self._conn: libvirt.virConnect | None = None
        self._callback_ids: list[int] = []
        self._lock = threading.Lock()
        self.closed = threading.Event()  # set once the connection is gone (or close() ran)
        self._closed_reported = False

    # ---- lifecycle of the subscription

    def open(self) -> HostSubscription:
        """Connect and register; raises HostUnreachable (within the connect timeout)."""
        event_loop.ensure_running()  # events (and keepalive) need libvirt's loop, test:/// too
        conn = self._pool.get(self.uri)
        try:
            conn.registerCloseCallback(self._on_close, None)
            ids = [
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
                ),
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, self._on_reboot, None
                ),
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_job_completed, None
                ),
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, self._on_block_job, None
                ),
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._on_device_removed, None
                ),
            ]
        except libvirt.libvirtError as exc:
            self._pool.close()
            raise HostUnreachable(
                f"Cannot subscribe to events of {self.uri}: {exc.get_error_message() or exc}"
            ) from exc
        with self._lock:
            self._conn, self._callback_ids = conn, ids
        return self

    def close(self) -> None:
        """Deregister and close; no ConnectionClosed is delivered for a close we asked for."""
        with self._lock:
            conn, ids = self._conn, self._callback_ids
            self._conn, self._callback_ids = None, []
            self._closed_reported = True
        self.closed.set()
        if conn is None:
            return
        for callback_id in ids:
            try:
                conn.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError:
                pass  # the connection is already dead: nothing is registered any more
        try:
            conn.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass
        self._pool.close()

    @property
    def alive(self) -> bool:
        with self._lock:
            conn = self._conn
        if conn is None or self.closed.is_set():
            return False
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    # ---- callbacks (libvirt's event loop thread: queue, never block)

    def _emit(self, dom, kind: str, state: str | None, event: str, detail: str) -> None:
        try:
            item = DomainEvent(
                uri=self.uri,
                name=dom.name(),
                uuid=dom.UUIDString(),
                kind=kind,
                state=state,
                event=event,
                detail=detail,
                at=time.time(),
            )
            self._deliver(item)
        except Exception:  # never let an exception unwind into libvirt's loop
            log.exception("event of %s not delivered", self.uri)

    def _on_lifecycle(self, _conn, dom, event, detail, _opaque) -> None:
        name, _ = _LIFECYCLE.get(event, (f"event-{event}", None))
        detail_name = _DETAILS.get(event, {}).get(detail, str(detail))
        self._emit(dom, LIFECYCLE, lifecycle_state(event), name, detail_name)

    def _on_reboot(self, _conn, dom, _opaque) -> None:
        self._emit(dom, REBOOT, None, REBOOT, "")

    def _on_job_completed(self, _conn, dom, params, _opaque) -> None:
        operation = params.get("operation") if isinstance(params, dict) else None
        self._emit(
            dom, JOB_COMPLETED, None, JOB_COMPLETED, "" if operation is None else str(operation)
        )

    def _on_block_job(self, _conn, dom, disk, job_type, status, _opaque) -> None:
        kind = _BLOCK_JOB_TYPES.get(job_type, str(job_type))
        outcome = _BLOCK_JOB_STATUS.get(status, str(status))
        self._emit(dom, BLOCK_JOB, None, BLOCK_JOB, f"{disk} {kind} {outcome}")

    def _on_device_removed(self, _conn, dom, alias, _opaque) -> None:
        self._emit(dom, DEVICE_REMOVED, None, DEVICE_REMOVED, str(alias))

    def _on_close(self, _conn, reason, _opaque) -> None:
        with self._lock:
            report = not self._closed_reported
            self._closed_reported = True
        self.closed.set()
        if not report:
            return
        try:
            self._deliver(
                ConnectionClosed(
                    uri=self.uri, reason=_CLOSE_REASONS.get(reason, str(reason)), at=time.time()
                )
            )
        except Exception:
            log.exception("close of %s not delivered", self.uri)


def subscribe(uri: str, deliver: Delivery, *, connect_timeout: float = 10.0) -> HostSubscription:
    """Open a HostSubscription to `uri` (raises HostUnreachable)."""
    return HostSubscription(uri, deliver, connect_timeout=connect_timeout).open()


__all__ = [
    "BLOCK_JOB",
    "DEVICE_REMOVED",
    "JOB_COMPLETED",
    "LIFECYCLE",
    "REBOOT",
    "ConnectionClosed",
    "DomainEvent",
    "HostSubscription",
    "lifecycle_state",
    "subscribe",
]
