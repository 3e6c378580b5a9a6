"""Reads about instances: what a user may see, jobs of an instance, unmanaged domains."""

from __future__ import annotations

from dataclasses import asdict

from django.db.models import F, QuerySet

from cloudpanel import virt
from cloudpanel.jobs.models import Job
from cloudpanel.projects import access
from hosts.connection import connection_uri
from hosts.models import Host

from .models import Flavor, Instance, Volume

# Transient guests the panel itself starts (KVM probe) are not unmanaged domains.
_INTERNAL_PREFIXES = ("cloudpanel-kvm-probe-",)


# The names the API shows of an instance's related rows, read by the same query.
_RELATED_NAMES = {
    "host_name": F("host__name"),
    "flavor_name": F("flavor__name"),
    "image_name": F("image__name"),
    "project_name": F("project__name"),
    "owner_name": F("owner__username"),
}


def instance_detail_for(user) -> QuerySet[Instance]:
    qs = Instance.objects.select_related(
        "host", "flavor", "image", "project", "current_job__requested_by", "owner"
    ).annotate(**_RELATED_NAMES)
    return access.scope_to_user(qs, user)


def instance_list_for(user) -> QuerySet[Instance]:
    """instance_detail_for for lists (the API's): the related rows' names and the current
    job, without building the related rows themselves (the host's capabilities, pools and
    networks were decoded from JSON on every row, for nothing)."""
    qs = Instance.objects.select_related("current_job__requested_by").annotate(**_RELATED_NAMES)
    return access.scope_to_user(qs, user)


def volumes_by_instance(instance_ids) -> dict[int, list[dict]]:
    """The volumes of a page of instances in one query, as plain dicts (a prefetch built a
    related manager and a model per row: a third of a list request's time)."""
    volumes: dict[int, list[dict]] = {}
    rows = (
        Volume.objects.filter(instance_id__in=list(instance_ids))
        .order_by("id")
        .values_list("instance_id", "pool", "name", "path", "role")
    )
    for instance_id, pool, name, path, role in rows:
        volumes.setdefault(instance_id, []).append(
            {"pool": pool, "name": name, "path": path, "role": role}
        )
    return volumes


def flavor_list() -> QuerySet[Flavor]:
    return Flavor.objects.all()


def instance_job_list(instance: Instance) -> QuerySet[Job]:
    return Job.objects.filter(target_type=Job.TargetType.INSTANCE, target_id=instance.pk).order_by(
        "-created_at", "-id"
    )


def unmanaged_domain_list(host: Host) -> list[dict]:
    """Domains defined on the host that no instance row knows, asked of libvirt now."""
    return unmanaged_domains_among(host, virt.list_domains(connection_uri(host)))


def unmanaged_domains_among(host: Host, domains: list[virt.DomainSummary]) -> list[dict]:
    """Those of `domains` (listed on `host`) that no instance row knows (by name or uuid),
    and the leftovers of instances that now live elsewhere (marked `leftover_of`)."""
    known_names = set(Instance.objects.filter(host=host).values_list("domain_name", flat=True))
    known_uuids = {str(u) for u in Instance.objects.values_list("uuid", flat=True)}
    result = []
    for dom in domains:
        if dom.name in known_names or dom.uuid in known_uuids:
            continue
        if dom.name.startswith(_INTERNAL_PREFIXES):
            continue
        result.append({**asdict(dom), "host": host.pk, "host_name": host.name})
    return sorted(result + leftover_domains_among(host, domains), key=lambda d: d["name"])


def leftover_domains_among(host: Host, listed: list[virt.DomainSummary]) -> list[dict]:
    """Domains on `host` of instances that now live on another host (rebuilt there after this
    host was lost, or moved while it could not be told): stale copies to clean, never to
    start or to attach to the instance again. Listed with the unmanaged domains, marked by
    `leftover_of` (the instance's id)."""
    known_here = set(Instance.objects.filter(host=host).values_list("domain_name", flat=True))
    by_uuid = {
        str(i.uuid): i
        # An instance a job works on (a migration) may be on both hosts for a while.
        for i in Instance.objects.exclude(host=host)
        .filter(uuid__in=[d.uuid for d in listed if d.uuid], current_job__isnull=True)
        .select_related("host")
    }
    leftovers = []
    for dom in listed:
        instance = by_uuid.get(dom.uuid)
        if instance is None or dom.name in known_here:
            continue
        leftovers.append(
            {
                **asdict(dom),
                "host": host.pk,
                "host_name": host.name,
                "leftover_of": instance.pk,
                "leftover_of_name": instance.name,
                "instance_host": instance.host.name if instance.host else "",
            }
        )
    return sorted(leftovers, key=lambda d: d["name"])
