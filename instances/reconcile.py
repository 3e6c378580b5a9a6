"""Periodic repair of drift between the database and what each online host really runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cloudpanel import virt
from hosts.connection import connection_uri
from hosts.models import Host

from .models import Instance
from .selectors import unmanaged_domains_among

log = logging.getLogger(__name__)

# States a running job owns, and error, which waits for a person (any job refreshes it).
_LEFT_ALONE = (Instance.State.BUILDING, Instance.State.DELETING, Instance.State.ERROR)


@dataclass
class ReconcileReport:
    hosts: int = 0
    missing: list[int] = field(default_factory=list)
    fixed: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)
    unmanaged: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "hosts": self.hosts,
            "missing": self.missing,
            "fixed": self.fixed,
            "found": self.found,
            "unmanaged": self.unmanaged,
            "errors": self.errors,
        }


def reconcile_host(host: Host, report: ReconcileReport) -> None:
    listed = virt.list_domains(connection_uri(host))
    domains = {d.name: d for d in listed}
    instances = Instance.objects.filter(host=host, current_job__isnull=True).exclude(
        state__in=_LEFT_ALONE
    )
    for instance in instances:
        dom = domains.get(instance.domain_name)
        if dom is None:
            if instance.state == Instance.State.MISSING:
                continue
            # Conditional update: a job that started meanwhile wins.
            updated = Instance.objects.filter(
                pk=instance.pk, current_job__isnull=True, state=instance.state
            ).update(
                state=Instance.State.MISSING,
                state_reason=(
                    f"Domain {instance.domain_name} vanished from host {host.name} "
                    f"(was {instance.state}); found by reconcile."
                ),
            )
            if updated:
                report.missing.append(instance.pk)
            continue
        if dom.state != instance.state:
            came_back = instance.state == Instance.State.MISSING
            updated = Instance.objects.filter(
                pk=instance.pk, current_job__isnull=True, state=instance.state
            ).update(state=dom.state, state_reason="")
            if updated:
                (report.found if came_back else report.fixed).append(instance.pk)
    # Kept on the host row, so its page lists them without asking libvirt.
    unmanaged = unmanaged_domains_among(host, listed)
    Host.objects.filter(pk=host.pk).update(unmanaged_domains=unmanaged)
    report.unmanaged += len(unmanaged)


def reconcile_all() -> ReconcileReport:
    report = ReconcileReport()
    for host in Host.objects.filter(status=Host.Status.ONLINE):
        try:
            reconcile_host(host, report)
            report.hosts += 1
        except virt.VirtError as exc:
            # One unreachable host never stops the others; health checks mark it offline.
            log.warning("reconcile of host %s failed: %s", host.name, exc)
            report.errors[host.name] = str(exc)
    return report
