"""What a domain event changes in the database: the instance's state, or the host's list of
unmanaged domains. Runs in a host's event worker thread, never on libvirt's loop."""

from __future__ import annotations

import logging

from django.utils import timezone

from cloudpanel import virt
from cloudpanel.jobs.models import Job
from cloudpanel.virt import domains
from cloudpanel.virt.events import BLOCK_JOB, DomainEvent
from hosts.models import Host

from ..mirror_events import on_block_job
from ..models import Instance
from ..selectors import unmanaged_domains_among
from ..signals import instance_changed

log = logging.getLogger(__name__)

# A running job owns these (create, delete) and refreshes the row itself at its end; error
# waits for a person, as reconcile leaves it (any job refreshes it).
LEFT_ALONE = (
    Instance.State.BUILDING,
    Instance.State.DELETING,
    Instance.State.ERROR,
    Instance.State.HOST_DOWN,  # an admin decides: rebuild elsewhere, or the host returns
)

MANAGED, UNMANAGED = "managed", "unmanaged"

# While one of these runs, the instance's domain leaves its host (stopped/migrated, then
# undefined) and appears on another: the job records where it ends up.
MOVING_KINDS = ("instance.migrate", "instance.cold-migrate")


def is_moving(instance: Instance) -> bool:
    if instance.current_job_id is None:
        return False
    return Job.objects.filter(
        pk=instance.current_job_id,
        kind__in=MOVING_KINDS,
        status__in=(Job.Status.PENDING, Job.Status.RUNNING),
    ).exists()


def _state_now(uri: str, host: Host, event: DomainEvent, was: str) -> tuple[str, str] | None:
    """(state, reason) read from libvirt now, for events that do not say the state."""
    try:
        return domains.domain_state(uri, event.name), ""
    except virt.NotFound:
        return Instance.State.MISSING, (
            f"Domain {event.name} vanished from host {host.name} (was {was}); "
            f"seen by the host watcher ({event.event})."
        )
    except virt.VirtError as exc:
        # The host went away meanwhile: its subscription closes, reconcile runs on return.
        log.info("state of %s on %s not read: %s", event.name, host.name, exc)
        return None


def apply_event(host: Host, uri: str, event: DomainEvent) -> str:
    """Bring the instance whose domain the event is about up to date (conditionally: a job
    or reconcile that wrote meanwhile wins) and announce a change. Returns MANAGED, or
    UNMANAGED when no instance on the host has that domain."""
    instance = Instance.objects.filter(host=host, domain_name=event.name).first()
    if instance is None:
        return UNMANAGED
    if is_moving(instance):
        return MANAGED  # the migration's own block jobs and lifecycle events
    if event.kind == BLOCK_JOB:
        on_block_job(instance, host, uri, event)
    if instance.state in LEFT_ALONE:
        return MANAGED
    if event.state is not None:
        new = (event.state, "")
    else:
        new = _state_now(uri, host, event, instance.state)
        if new is None:
            return MANAGED
    state, reason = new
    if state == instance.state:
        return MANAGED
    updated = (
        Instance.objects.filter(pk=instance.pk, state=instance.state)
        .exclude(state__in=LEFT_ALONE)
        .update(state=state, state_reason=reason, updated_at=timezone.now())
    )
    if updated:
        instance.refresh_from_db()
        log.info(
            "%s (%s on %s): %s/%s -> %s (event at %.3f)",
            instance.name, event.name, host.name, event.event, event.detail, state, event.at,
        )  # fmt: skip
        instance_changed.send(sender=Instance, instance=instance)
    return MANAGED


def refresh_unmanaged(host: Host, uri: str) -> None:
    """Re-list the host's domains into Host.unmanaged_domains (as reconcile keeps it)."""
    try:
        listed = virt.list_domains(uri)
    except virt.VirtError as exc:
        log.info("unmanaged domains of %s not refreshed: %s", host.name, exc)
        return
    unmanaged = unmanaged_domains_among(host, listed)
    Host.objects.filter(pk=host.pk).update(unmanaged_domains=unmanaged)
