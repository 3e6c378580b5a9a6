"""GET /metrics: the panel's state in Prometheus' text format.

Families (all gauges, read fresh at every scrape):
- cloudpanel_hosts{status}: hosts by status (every status, zeros included);
- cloudpanel_host_up{host}: 1 when the host is online;
- cloudpanel_host_{physical,capacity,allocated}{host,resource}: vcpus, ram_bytes and
  disk_bytes as the scheduler counts them (capacity = physical x allocation ratio);
- cloudpanel_host_instances{host}: instances holding resources there;
- cloudpanel_instances{state}: instances by state (every state, zeros included);
- cloudpanel_jobs{kind,status}: job rows by kind and status;
- cloudpanel_instance_<figure>{uuid,name,project,host}: each instance's latest metric sample
  (cloudpanel/live/metrics.py), and cloudpanel_host_<figure>{host} for the host totals.

Cardinality: one series per instance and figure, labelled by what identifies it (uuid) and
what a person filters by (name, project, host). Nothing that changes often (state, job,
addresses) is a label there, and samples older than a few sweeps are left out, so a stopped
or deleted instance drops out instead of lingering. The scrape costs a constant number of
queries (four) and two Redis round trips, whatever the number of instances.

Access: with settings.METRICS_TOKEN, "Authorization: Bearer <token>" (compared in constant
time; a wrong or missing one is 401). Without a token, only clients whose REMOTE_ADDR is in
settings.METRICS_ALLOWED_NETWORKS (403 otherwise). X-Forwarded-For is never read: any client
can write it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from cloudpanel.jobs.models import Job
from hosts.models import Host
from hosts.selectors import host_capacity, host_list_with_allocation
from instances.models import Instance

from . import metrics

log = logging.getLogger(__name__)

PREFIX = "cloudpanel"
# Sample keys -> (metric name suffix, help). Host samples add "instances".
FIGURES = {
    "cpu_percent": ("cpu_percent", "CPU use, percent of the allocated vCPUs"),
    "memory_used_bytes": ("memory_used_bytes", "Guest memory in use"),
    "memory_total_bytes": ("memory_total_bytes", "Guest memory"),
    "disk_read_bps": ("disk_read_bytes_per_second", "Disk reads"),
    "disk_write_bps": ("disk_write_bytes_per_second", "Disk writes"),
    "net_rx_bps": ("network_receive_bytes_per_second", "Network bytes received"),
    "net_tx_bps": ("network_transmit_bytes_per_second", "Network bytes sent"),
}
HOST_FIGURES = {**FIGURES, "instances": ("running_instances", "Running instances sampled")}
STALE_SWEEPS = 3  # a sample older than this many sweep intervals is not exported


def _stale_before(now: float) -> float:
    interval = max(float(settings.WATCHER_STATS_INTERVAL), 1.0)
    return now - STALE_SWEEPS * interval


class PanelCollector:
    """Reads the database and the metrics store at each collect(); holds no state."""

    def collect(self):
        now = time.time()
        yield from self._hosts(now)
        yield from self._instances(now)
        yield self._jobs()

    def _hosts(self, now: float):
        hosts = list(host_list_with_allocation().order_by("name"))  # one query
        by_status = GaugeMetricFamily(f"{PREFIX}_hosts", "Hosts by status", labels=["status"])
        counts = {status: 0 for status in Host.Status.values}
        for host in hosts:
            counts[host.status] = counts.get(host.status, 0) + 1
        for status, n in counts.items():
            by_status.add_metric([status], n)
        yield by_status

        up = GaugeMetricFamily(f"{PREFIX}_host_up", "1 when the host is online", labels=["host"])
        physical = GaugeMetricFamily(
            f"{PREFIX}_host_physical",
            "What the host has (cores, bytes)",
            labels=["host", "resource"],
        )
        capacity = GaugeMetricFamily(
            f"{PREFIX}_host_capacity",
            "What may be allocated on the host: physical x allocation ratio",
            labels=["host", "resource"],
        )
        allocated = GaugeMetricFamily(
            f"{PREFIX}_host_allocated",
            "What the host's instances are allocated",
            labels=["host", "resource"],
        )
        instances = GaugeMetricFamily(
            f"{PREFIX}_host_instances", "Instances holding resources on the host", labels=["host"]
        )
        for host in hosts:
            up.add_metric([host.name], 1 if host.status == Host.Status.ONLINE else 0)
            cap = host_capacity(host)  # annotated: no query
            for resource, res in (("vcpus", cap.vcpus), ("ram_bytes", cap.ram),
                                  ("disk_bytes", cap.disk)):  # fmt: skip
                physical.add_metric([host.name, resource], res.physical)
                capacity.add_metric([host.name, resource], res.limit)
                allocated.add_metric([host.name, resource], res.allocated)
            instances.add_metric([host.name], cap.instances)
        yield from (up, physical, capacity, allocated, instances)

        names = {host.pk: host.name for host in hosts}
        samples = _latest(metrics.HOST, names, now)
        families = {
            key: GaugeMetricFamily(f"{PREFIX}_host_{name}", f"{text} (host total)", labels=["host"])
            for key, (name, text) in HOST_FIGURES.items()
        }
        for host_id, sample in samples.items():
            _add(families, sample, [names[host_id]])
        yield from families.values()

    def _instances(self, now: float):
        rows = Instance.objects.values_list("state").annotate(n=Count("id")).order_by()
        counts = {state: 0 for state in Instance.State.values}
        counts.update(dict(rows))  # one query
        by_state = GaugeMetricFamily(f"{PREFIX}_instances", "Instances by state", labels=["state"])
        for state, n in counts.items():
            by_state.add_metric([state], n)
        yield by_state

        # Only instances on a host can have samples; one query for their labels.
        placed = {
            row["id"]: row
            for row in Instance.objects.filter(host__isnull=False).values(
                "id", "uuid", "name", "project__name", "host__name"
            )
        }
        families = {
            key: GaugeMetricFamily(
                f"{PREFIX}_instance_{name}", text, labels=["uuid", "name", "project", "host"]
            )
            for key, (name, text) in FIGURES.items()
        }
        for instance_id, sample in _latest(metrics.INSTANCE, placed, now).items():
            row = placed[instance_id]
            labels = [str(row["uuid"]), row["name"], row["project__name"] or "", row["host__name"]]
            _add(families, sample, labels)
        yield from families.values()

    @staticmethod
    def _jobs():
        family = GaugeMetricFamily(
            f"{PREFIX}_jobs", "Jobs by kind and status", labels=["kind", "status"]
        )
        rows = (
            Job.objects.values_list("kind", "status")
            .annotate(n=Count("id"))
            .order_by("kind", "status")
        )
        for kind, status, n in rows:  # one query
            family.add_metric([kind, status], n)
        return family


def _latest(kind: str, objects: dict, now: float) -> dict[int, dict]:
    """The fresh latest samples of `objects` (id -> sample); none when Redis is down."""
    try:
        samples = metrics.latest(kind, objects.keys())  # one round trip
    except Exception as exc:  # the database's figures are still worth a scrape
        log.warning("metrics store unavailable for /metrics: %s", exc)
        return {}
    oldest = _stale_before(now)
    return {i: s for i, s in samples.items() if float(s.get("t", 0)) >= oldest}


def _add(families: dict[str, GaugeMetricFamily], sample: dict, labels: list[str]) -> None:
    at = sample.get("t")
    for key, family in families.items():
        value = sample.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            family.add_metric(labels, value, timestamp=at)


# --------------------------------------------------------------------------- access


def _networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in settings.METRICS_ALLOWED_NETWORKS:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            log.warning("METRICS_ALLOWED_NETWORKS: %r is not a network; ignored", entry)
    return networks


def _address_allowed(remote: str) -> bool:
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return any(address.version == net.version and address in net for net in _networks())


def refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may scrape; else the 401/403 answer."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return None
        response = HttpResponse("A valid bearer token is required.\n", status=401,
                                content_type="text/plain")  # fmt: skip
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if _address_allowed(request.META.get("REMOTE_ADDR", "")):
        return None
    return HttpResponse("Forbidden.\n", status=403, content_type="text/plain")


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = refusal(request)
    if refused is not None:
        return refused
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PanelCollector())
    # The classic text format (every name here is a legacy one): Prometheus 2 and 3 read it.
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
