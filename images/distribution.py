"""Keeping copies of an image on hosts ahead of need: the image's policy (none, chosen hosts,
all hosts), which hosts still lack a copy, and starting the jobs that bring them in.

The copies themselves are images.replicas' (one per host's default pool), made by the
image.distribute job (images/operations.py) as image.mirror child jobs. A host that joins
later, or comes back online, is served by the receiver on hosts.signals.host_changed and by
the periodic task images.distribute_all, which both call `distribute_missing`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from cloudpanel.audit.decorators import audited
from cloudpanel.errors import InvalidInput, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import JobConflict
from cloudpanel.projects.access import is_admin
from hosts.models import Host

from .models import Image, ImageReplica

log = logging.getLogger(__name__)


@audited("image.distribution", target="image")
def image_set_distribution(
    *, user, image: Image, distribution: str, hosts: Iterable[Host] | None = None
) -> Image:
    """Set where the image is kept (admins only). `hosts` only with distribution 'hosts'."""
    if not is_admin(user):
        raise PermissionDenied("Only administrators can choose where images are kept.")
    if distribution not in Image.Distribution.values:
        raise InvalidInput({"distribution": [f"One of {', '.join(Image.Distribution.values)}."]})
    hosts = list(hosts or [])
    if distribution == Image.Distribution.HOSTS and not hosts:
        raise InvalidInput({"distribution_hosts": ["Choose at least one host."]})
    if distribution != Image.Distribution.HOSTS and hosts:
        raise InvalidInput(
            {"distribution_hosts": ["Hosts are chosen only with distribution 'hosts'."]}
        )
    with transaction.atomic():
        image.distribution = distribution
        image.save(update_fields=["distribution", "updated_at"])
        image.distribution_hosts.set(hosts)
    return image


def policy_hosts(image: Image):
    """The hosts the policy names (whatever their state)."""
    if image.distribution == Image.Distribution.ALL:
        return Host.objects.all()
    if image.distribution == Image.Distribution.HOSTS:
        return image.distribution_hosts.all()
    return Host.objects.none()


def _schedulable(hosts):
    return hosts.filter(enabled=True, maintenance=False, status=Host.Status.ONLINE)


def hosts_with_copy(image: Image) -> set[int]:
    """Ids of hosts holding an active copy in their default pool (an image's content never
    changes; the copy job checks the volume itself)."""
    rows = ImageReplica.objects.filter(image=image, status=ImageReplica.Status.ACTIVE).values_list(
        "host_id", "pool", "host__default_pool"
    )
    return {host_id for host_id, pool, default in rows if pool == default}


def hosts_missing(image: Image) -> list[Host]:
    """Online, schedulable hosts the policy names that lack a copy (by name)."""
    if image.distribution == Image.Distribution.NONE or image.status != Image.Status.ACTIVE:
        return []
    have = hosts_with_copy(image)
    return [h for h in _schedulable(policy_hosts(image)).order_by("name") if h.pk not in have]


def distribution_plan(image: Image) -> list[dict]:
    """Every host the policy names with what distribution will do there, for the job and
    the page: copy, present, or skipped (with the reason)."""
    have = hosts_with_copy(image)
    plan = []
    for host in policy_hosts(image).order_by("name"):
        if host.pk in have:
            action, why = "present", ""
        elif not host.is_schedulable:
            action = "skipped"
            why = (
                "disabled"
                if not host.enabled
                else "in maintenance"
                if host.maintenance
                else host.status
            )
        else:
            action, why = "copy", ""
        plan.append({"host": host.pk, "host_name": host.name, "action": action, "reason": why})
    return plan


def distribution_job_active(image: Image) -> Job | None:
    return (
        Job.objects.filter(
            kind="image.distribute",
            target_type=Job.TargetType.IMAGE,
            target_id=image.pk,
            status__in=Job.ACTIVE,
        )
        .order_by("created_at")
        .first()
    )


def distribute_missing(images=None) -> list[Job]:
    """Start a distribution job for each image (default: all with a policy) that some online,
    schedulable host it should be on lacks; never a second one for an image that has one
    running. Returns the jobs started."""
    from .operations import DISTRIBUTE  # the operation imports this module

    if images is None:
        images = Image.objects.filter(status=Image.Status.ACTIVE).exclude(
            distribution=Image.Distribution.NONE
        )
    started = []
    for image in images:
        if distribution_job_active(image) is not None or not hosts_missing(image):
            continue
        try:
            with transaction.atomic():
                started.append(DISTRIBUTE.create_job(user=None, target=image, params={}))
        except JobConflict:
            continue  # another job on the image (a distribution started meanwhile, ...)
    return started


def on_host_changed(sender, host: Host, **kwargs) -> None:
    """A host came online (or joined): bring it the images kept everywhere or on it."""
    if not host.is_schedulable:
        return
    try:
        wanted = Image.objects.filter(status=Image.Status.ACTIVE).filter(
            distribution=Image.Distribution.ALL
        ) | Image.objects.filter(
            status=Image.Status.ACTIVE,
            distribution=Image.Distribution.HOSTS,
            distribution_hosts=host,
        )
        have = ImageReplica.objects.filter(
            host=host, pool=host.default_pool, status=ImageReplica.Status.ACTIVE
        ).values_list("image_id", flat=True)
        lacking = wanted.exclude(pk__in=have).distinct()
        if lacking.exists():
            distribute_missing(list(lacking))
    except Exception:  # a signal receiver must never break the host's own update
        log.exception("image distribution for host %s not started", host)
