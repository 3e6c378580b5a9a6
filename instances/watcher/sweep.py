"""One metrics sweep of one host: the bulk stats call, rates against the previous sweep,
the bounded Redis store, and one "status.metrics" message per audience."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from cloudpanel.live import metrics
from cloudpanel.live.publisher import ADMIN_GROUP, project_group, publish
from cloudpanel.virt import stats
from hosts.models import Host

from ..models import Instance


def send_all(messages: list[tuple[list[str], dict]]) -> None:
    """Publish each message to its groups (the publisher keeps one connection open)."""
    for groups, message in messages:
        publish(groups, message)  # never raises


def metrics_messages(host_id: int, t: float, totals: dict, entries: list[dict]):
    """The admin's message (every instance, the host's totals) and one per project with
    instances in the sweep (its instances only, no host totals)."""
    base = {"type": "status.metrics", "host": host_id, "t": t}
    messages = [([ADMIN_GROUP], {**base, "host_totals": totals, "instances": entries})]
    by_project: dict[int, list[dict]] = defaultdict(list)
    for entry in entries:
        by_project[entry["project"]].append(entry)
    for project_id, items in sorted(by_project.items()):
        messages.append(([project_group(project_id)], {**base, "instances": items}))
    return messages


@dataclass
class SweepResult:
    """What one sweep measured, not yet stored nor sent (the owner checks its lease first)."""

    host_id: int
    t: float
    samples: dict[int, dict]  # instance id -> sample
    totals: dict
    messages: list[tuple[list[str], dict]]

    def record_and_publish(self) -> None:
        metrics.record_many(metrics.INSTANCE, self.samples)
        metrics.record_many(metrics.HOST, {self.host_id: self.totals})
        send_all(self.messages)


class Sweeper:
    """Keeps a host's previous counters between sweeps; the first sweep only primes them."""

    def __init__(self) -> None:
        self.previous: dict[str, stats.DomainCounters] = {}
        self.primed = False

    def sweep(self, host: Host, uri: str) -> SweepResult | None:
        """One bulk stats call and the rates since the previous one (None when priming)."""
        counters = stats.domain_counters(uri)
        rows = Instance.objects.filter(host_id=host.pk).exclude(domain_name="")
        managed = {
            name: (pk, project)
            for pk, project, name in rows.values_list("pk", "project_id", "domain_name")
        }
        samples: dict[int, dict] = {}
        entries: list[dict] = []
        used: list[stats.DomainCounters] = []
        for current in counters:
            row = managed.get(current.name)
            before = self.previous.get(current.name)
            if row is None or before is None or before.uuid != current.uuid:
                continue
            sample = stats.rates(before, current)
            samples[row[0]] = sample
            entries.append({"id": row[0], "project": row[1], **sample})
            used.append(current)
        self.previous = {c.name: c for c in counters}
        if not self.primed:
            self.primed = True
            return None
        t = round(counters[0].t if counters else time.time(), 3)
        cpus = int((host.capabilities or {}).get("cpus") or 1)
        totals = stats.host_totals(list(samples.values()), used, host_cpus=cpus, t=t)
        return SweepResult(
            host.pk, t, samples, totals, metrics_messages(host.pk, t, totals, entries)
        )
