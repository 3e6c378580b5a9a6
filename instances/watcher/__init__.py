"""The host watcher (`manage.py watch_hosts`): libvirt events and metrics, live.

One long-running process (or several: each host has one owner at a time, through a Redis
lease, see lease.py) keeps a dedicated libvirt connection per online host, subscribed to
domain events. Each event updates the instance's state in the database (apply.py) and is
announced through instances.signals.instance_changed (its receiver publishes
"status.instance"); events for domains the panel does not manage refresh the host's
unmanaged list. A lost connection is reported through the hosts services (offline, then
online again once it is back, with its own transitions published) and re-subscribed; on
every (re)subscription the host is reconciled once, for the events nobody heard. Every
WATCHER_STATS_INTERVAL seconds one bulk stats call per owned host gives each instance's
rates, the host's totals, the bounded Redis store and one "status.metrics" message per
audience (sweep.py). Reconcile (Celery beat) stays the slow safety net.
"""

from .lease import Leases
from .runner import HostWatch, Watcher

__all__ = ["HostWatch", "Leases", "Watcher"]
