"""Instance and flavor rules that need no job: flavors, rename, forget, state from libvirt,
adoption. Everything long (create, power, resize, snapshots, delete) is an operation
(instances/operations/)."""

from __future__ import annotations

import logging
import math
import re

from django.db import transaction

from cloudpanel.audit.decorators import audited
from cloudpanel.errors import Conflict, HostUnavailable, InvalidInput, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import job_active_for
from cloudpanel.projects import access
from cloudpanel.projects.models import Project
from cloudpanel.projects.services import project_get_default
from cloudpanel.virt import AgentUnavailable, NotFound, VirtError, agent, domains
from hosts.connection import connection_uri
from hosts.models import Host
from hosts.selectors import GIB

from .models import Flavor, Instance, Snapshot, Volume
from .rules import NAME_MAX, require_act, validate_name
from .signals import instance_changed

log = logging.getLogger(__name__)


# Flavors


@audited("flavor.create", target_type="flavor")
def flavor_create(*, name: str, vcpus: int, ram_mib: int, disk_gib: int) -> Flavor:
    flavor = Flavor(name=validate_name(name), vcpus=vcpus, ram_mib=ram_mib, disk_gib=disk_gib)
    flavor.full_clean()
    flavor.save()
    return flavor


@audited("flavor.update", target="flavor")
def flavor_update(*, flavor: Flavor, **fields) -> Flavor:
    if "name" in fields:
        fields["name"] = validate_name(fields["name"])
    sizes = {"vcpus", "ram_mib", "disk_gib"} & set(fields)
    if sizes and flavor.instances.exists():
        changed = [f for f in sizes if fields[f] != getattr(flavor, f)]
        if changed:
            raise Conflict(
                f"Flavor {flavor.name} is used by instances; its sizes cannot change. "
                "Create a new flavor and resize the instances instead."
            )
    for key, value in fields.items():
        setattr(flavor, key, value)
    flavor.full_clean()
    flavor.save()
    return flavor


@audited("flavor.delete", target="flavor")
def flavor_delete(*, flavor: Flavor) -> None:
    count = flavor.instances.count()
    if count:
        raise Conflict(f"Flavor {flavor.name} is used by {count} instance(s).")
    flavor.delete()


@audited("instance.rename", target="instance")
def instance_rename(*, user, instance: Instance, name: str) -> Instance:
    require_act(user, instance)
    name = validate_name(name)
    if (
        Instance.objects.filter(project=instance.project, name=name)
        .exclude(pk=instance.pk)
        .exists()
    ):
        raise InvalidInput(
            {"name": [f"Project {instance.project.name} already has an instance {name}."]}
        )
    instance.name = name
    instance.save(update_fields=["name", "updated_at"])
    return instance


@audited("instance.forget", target="instance")
def instance_forget(*, user, instance: Instance) -> None:
    """Drop the record of an instance whose host cannot be reached (admins only).

    The way out when a host is gone for good. Nothing on the host is touched: if it comes
    back, reconcile lists the domain as unmanaged, to adopt or remove.
    """
    if not access.is_admin(user):
        raise PermissionDenied("Only administrators may forget instances.")
    host = instance.host
    if host is not None and host.status == Host.Status.ONLINE:
        raise Conflict(f"Host {host.name} is online: delete the instance instead.")
    running = job_active_for(target_type=Job.TargetType.INSTANCE, target_id=instance.pk)
    if running is not None:
        raise Conflict(f"Instance {instance.name} is busy with job {running.id} ({running.kind}).")
    log.warning(
        "instance %s (%s) forgotten by %s; host %s unreachable",
        instance.name,
        instance.uuid,
        user,
        host,
    )
    with transaction.atomic():
        Snapshot.objects.filter(instance=instance).delete()
        instance.delete()


# State from libvirt


def instance_sync_state(*, instance: Instance, reason: str | None = None) -> Instance:
    """Read the domain's state, MAC and addresses from libvirt into the row.

    A vanished domain makes the instance 'missing' (never deleted); an unreachable host
    leaves the recorded state alone.
    """
    if instance.host is None or not instance.domain_name:
        return instance
    uri = connection_uri(instance.host)
    fields = ["state", "state_reason", "updated_at"]
    try:
        details = domains.domain_details(uri, instance.domain_name)
    except NotFound:
        if instance.state != Instance.State.MISSING:
            instance.state = Instance.State.MISSING
            instance.state_reason = (
                f"Domain {instance.domain_name} no longer exists on host {instance.host.name}."
            )
            instance.save(update_fields=fields)
            instance_changed.send(sender=Instance, instance=instance)
        return instance
    except VirtError as exc:
        log.info("cannot refresh %s: %s", instance, exc)
        return instance
    instance.state = details.state
    if reason is not None:
        instance.state_reason = reason
    elif (
        instance.state_reason.startswith("Domain ") and "no longer exists" in instance.state_reason
    ):
        instance.state_reason = ""
    if details.macs and not instance.mac_address:
        instance.mac_address = details.macs[0]
        fields.append("mac_address")
    ips = _guest_addresses(uri, instance.domain_name) if details.active else []
    if ips != instance.ip_addresses:
        instance.ip_addresses = ips
        fields.append("ip_addresses")
    instance.save(update_fields=fields)
    instance_changed.send(sender=Instance, instance=instance)
    return instance


def _guest_addresses(uri: str, domain_name: str) -> list[str]:
    """The guest's addresses from its agent; the host's DHCP leases when no agent answers
    (or it reports none: an interface still coming up)."""
    try:
        ips = agent.agent_addresses(uri, domain_name, timeout=agent.PING_TIMEOUT)
    except AgentUnavailable:
        ips = []
    except VirtError as exc:  # an agent answering oddly must not stop the state refresh
        log.info("agent addresses of %s: %s", domain_name, exc)
        ips = []
    return ips or domains.interface_addresses(uri, domain_name)


# Adoption of domains the panel did not create


def _flavor_for(vcpus: int, ram_mib: int, disk_gib: int) -> Flavor:
    flavor = Flavor.objects.filter(vcpus=vcpus, ram_mib=ram_mib, disk_gib=disk_gib).first()
    if flavor:
        return flavor
    flavor, _ = Flavor.objects.get_or_create(
        name=f"adopted-{vcpus}c-{ram_mib}m-{disk_gib}g",
        defaults={"vcpus": vcpus, "ram_mib": max(ram_mib, 16), "disk_gib": disk_gib},
    )
    return flavor


def _adopted_name(domain: str, project: Project) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "-", domain).strip("-._")[:NAME_MAX] or "adopted"
    if not base[0].isalnum():
        base = f"a{base}"[:NAME_MAX]
    name, n = base, 1
    while Instance.objects.filter(project=project, name=name).exists():
        n += 1
        suffix = f"-{n}"
        name = f"{base[: NAME_MAX - len(suffix)]}{suffix}"
    return name


@audited("instance.adopt", target_type="instance")
def instance_adopt(
    *, user, host: Host, domain_name: str, project: Project | None = None, name: str = ""
) -> Instance:
    """Take a domain the panel does not manage under management (admins only)."""
    if not access.is_admin(user):
        raise PermissionDenied("Only administrators may adopt domains.")
    if host.status != Host.Status.ONLINE:
        raise HostUnavailable(f"Host {host.name} is {host.status}")
    if not domain_name or len(domain_name) > 128:
        raise InvalidInput({"domain": ["A domain name is required."]})
    if Instance.objects.filter(host=host, domain_name=domain_name).exists():
        raise Conflict(f"Domain {domain_name} on {host.name} is already managed.")
    try:
        details = domains.domain_details(connection_uri(host), domain_name)
    except NotFound:
        raise InvalidInput({"domain": [f"Host {host.name} has no domain {domain_name}."]}) from None
    if Instance.objects.filter(uuid=details.uuid).exists():
        raise Conflict(f"Domain {domain_name} (uuid {details.uuid}) is already managed.")
    project = project or project_get_default()
    disk_bytes = sum(d.capacity_bytes for d in details.disks if d.device == "disk")
    disk_gib = max(1, math.ceil(disk_bytes / GIB))
    flavor = _flavor_for(details.vcpus or 1, max(details.memory_mib, 16), disk_gib)
    name = validate_name(name) if name else _adopted_name(domain_name, project)
    disks = [d for d in details.disks if d.device == "disk" and d.pool and d.volume]
    instance = Instance(
        name=name,
        uuid=details.uuid,
        project=project,
        owner=None,
        flavor=flavor,
        host=host,
        domain_name=details.name,
        state=details.state,
        mac_address=details.macs[0] if details.macs else "",
        adopted=True,
    )
    instance.full_clean(exclude=["uuid"])
    with transaction.atomic():
        instance.save()
        for index, disk in enumerate(disks):
            # A row left by a forgotten instance is the same volume: it is taken over.
            Volume.objects.update_or_create(
                host=host,
                pool=disk.pool,
                name=disk.volume,
                defaults={
                    "instance": instance,
                    "path": disk.path,
                    "capacity_bytes": disk.capacity_bytes,
                    "role": Volume.Role.ROOT if index == 0 else Volume.Role.DATA,
                    "state": Volume.State.READY,
                },
            )
    return instance
