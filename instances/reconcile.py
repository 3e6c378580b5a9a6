"""Periodic repair of drift between the database and what each online host really runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cloudpanel import virt
from cloudpanel.audit.services import audit_record
from cloudpanel.virt import storage
from hosts.connection import connection_uri
from hosts.models import Host

from .models import Instance, Volume
from .selectors import unmanaged_domains_among
from .signals import instance_changed
from .volumes import volume_ready

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
    # Volume rows: made ready (created, then the worker died), dropped (planned, never
    # made), and missing (ready, but gone from the host: left for a person to look at).
    volumes_ready: list[int] = field(default_factory=list)
    volumes_dropped: list[int] = field(default_factory=list)
    volumes_missing: list[int] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "hosts": self.hosts,
            "missing": self.missing,
            "fixed": self.fixed,
            "found": self.found,
            "unmanaged": self.unmanaged,
            "volumes_ready": self.volumes_ready,
            "volumes_dropped": self.volumes_dropped,
            "volumes_missing": self.volumes_missing,
            "errors": self.errors,
        }


def reconcile_host(host: Host, report: ReconcileReport) -> None:
    # The rows before the domains: an instance that a migration moves away meanwhile is
    # then seen here before it left, never as gone (and the updates below name the host).
    instances = list(
        Instance.objects.filter(host=host, current_job__isnull=True).exclude(
            state__in=_LEFT_ALONE
        )
    )
    listed = virt.list_domains(connection_uri(host))
    domains = {d.name: d for d in listed}
    for instance in instances:
        dom = domains.get(instance.domain_name)
        if dom is None:
            if instance.state == Instance.State.MISSING:
                continue
            # Conditional update: a job that started meanwhile wins.
            updated = Instance.objects.filter(
                pk=instance.pk, host=host, current_job__isnull=True, state=instance.state
            ).update(
                state=Instance.State.MISSING,
                state_reason=(
                    f"Domain {instance.domain_name} vanished from host {host.name} "
                    f"(was {instance.state}); found by reconcile."
                ),
            )
            if updated:
                report.missing.append(instance.pk)
                audit_record(
                    action="instance.missing", target=instance, result="failed",
                    params={"host": host.pk, "domain": instance.domain_name, "was": instance.state},
                    message="The virtual machine was no longer found on its host (reconcile).",
                )  # fmt: skip
                _announce(instance.pk)
            continue
        if dom.state != instance.state:
            came_back = instance.state == Instance.State.MISSING
            updated = Instance.objects.filter(
                pk=instance.pk, host=host, current_job__isnull=True, state=instance.state
            ).update(state=dom.state, state_reason="")
            if updated:
                (report.found if came_back else report.fixed).append(instance.pk)
                audit_record(
                    action="instance.found" if came_back else "instance.state_fixed",
                    target=instance,
                    params={"host": host.pk, "from": instance.state, "to": dom.state},
                )
                _announce(instance.pk)
    # Kept on the host row, so its page lists them without asking libvirt.
    unmanaged = unmanaged_domains_among(host, listed)
    Host.objects.filter(pk=host.pk).update(unmanaged_domains=unmanaged)
    report.unmanaged += len(unmanaged)
    reconcile_volumes(host, report)


def _announce(instance_id: int) -> None:
    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is not None:
        instance_changed.send(sender=Instance, instance=instance)


def reconcile_volumes(host: Host, report: ReconcileReport) -> None:
    """Match the host's volume rows with what its pools hold. Rows of an instance a job is
    working on are that job's business and left alone."""
    rows = Volume.objects.filter(host=host).exclude(instance__current_job__isnull=False)
    uri = connection_uri(host)
    for pool in sorted({row.pool for row in rows}):
        try:
            storage.pool_refresh(uri, pool)
            present = {v.name: v for v in storage.list_volumes(uri, pool)}
        except virt.NotFound:
            present = {}  # the pool itself is gone: every row in it is missing
        for row in (r for r in rows if r.pool == pool):
            info = present.get(row.name)
            if row.state == Volume.State.CREATING and info is not None:
                volume_ready(row, info)
                report.volumes_ready.append(row.pk)
            elif row.state == Volume.State.CREATING:
                report.volumes_dropped.append(row.pk)
                row.delete()
            elif info is None:
                report.volumes_missing.append(row.pk)


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
