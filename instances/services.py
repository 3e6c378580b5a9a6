"""Instance and flavor rules: validation, permission, scheduling, and the jobs that act.

Every write the UI and the API make goes through here; long libvirt work runs as a job
(instances/jobs.py).
"""

from __future__ import annotations

import logging
import math
import re

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from cloudpanel.errors import Conflict
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import job_active_for, job_create
from cloudpanel.projects import access
from cloudpanel.projects.models import Project, name_validator
from cloudpanel.projects.services import project_get_default
from cloudpanel.virt import HostUnreachable, NotFound, VirtError, domains
from hosts.models import Host
from hosts.selectors import GIB, MIB
from hosts.services import connection_uri
from images.models import Image

from . import scheduler
from .models import Flavor, Instance, Snapshot

log = logging.getLogger(__name__)

NAME_MAX = 63
# Belt and braces: the name validator already allows only [A-Za-z0-9._-].
_XML_META = re.compile(r"[<>&\"'\x00-\x1f]")

POWER_ACTIONS = ("start", "shutdown", "stop", "reboot", "reset", "suspend", "resume")
# States in which nothing but delete makes sense.
_GONE = (Instance.State.MISSING, Instance.State.DELETING)
_NEEDS = {
    "start": {"shutoff", "crashed", "nostate", "error"},
    "shutdown": {"running", "paused"},
    "stop": {"running", "paused", "crashed", "pmsuspended", "error", "nostate"},
    "reboot": {"running"},
    "reset": {"running"},
    "suspend": {"running"},
    "resume": {"paused"},
}
MAX_FORCE_AFTER = 3600


def validate_name(value: str, field: str = "name") -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError({field: ["A name is required."]})
    if len(value) > NAME_MAX:
        raise ValidationError({field: [f"At most {NAME_MAX} characters."]})
    if _XML_META.search(value):
        raise ValidationError({field: ["Characters like < > & \" ' are not allowed."]})
    try:
        name_validator(value)
    except ValidationError as exc:
        raise ValidationError({field: exc.messages}) from None
    return value


# Flavors


def flavor_create(*, name: str, vcpus: int, ram_mib: int, disk_gib: int) -> Flavor:
    flavor = Flavor(name=validate_name(name), vcpus=vcpus, ram_mib=ram_mib, disk_gib=disk_gib)
    flavor.full_clean()
    flavor.save()
    return flavor


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


def flavor_delete(*, flavor: Flavor) -> None:
    count = flavor.instances.count()
    if count:
        raise Conflict(f"Flavor {flavor.name} is used by {count} instance(s).")
    flavor.delete()


# Checks shared by every operation


def _require_act(user, instance_or_project) -> None:
    project = getattr(instance_or_project, "project", instance_or_project)
    if not access.can_act(user, project):
        raise PermissionDenied("You may not change instances in this project.")


def _require_host_online(instance: Instance, user) -> Host:
    host = instance.host
    if host is None:
        raise Conflict(f"Instance {instance.name} has no host.")
    if host.status != Host.Status.ONLINE:
        if not access.sees_infrastructure(user):  # the host's name and error are for admins
            raise HostUnreachable(
                f"The host of instance {instance.name} is unreachable right now; "
                "try again later or ask an administrator."
            )
        why = f": {host.last_error}" if host.last_error else ""
        raise HostUnreachable(f"Host {host.name} is {host.status}{why}")
    return host


def _no_room_message(user, exc: scheduler.NoValidHost, flavor: Flavor) -> str:
    """The scheduler's reasons name hosts and pools: for admins only."""
    if access.sees_infrastructure(user):
        return str(exc)
    return (
        f"No host has room for flavor {flavor.name} right now; try a smaller flavor "
        "or ask an administrator."
    )


def image_visible(user, image: Image) -> bool:
    if image.visibility == Image.Visibility.PUBLIC:
        return True
    return access.can_view(user, image.project)


def check_flavor_fits_image(flavor: Flavor, image: Image | None, field: str = "flavor") -> None:
    if image is None:
        return
    problems = []
    if image.min_disk_gib and flavor.disk_gib < image.min_disk_gib:
        problems.append(f"image {image.name} needs at least {image.min_disk_gib} GiB of disk")
    if image.min_ram_mib and flavor.ram_mib < image.min_ram_mib:
        problems.append(f"image {image.name} needs at least {image.min_ram_mib} MiB of RAM")
    if (
        image.disk_format != Image.Format.ISO
        and image.virtual_size
        and image.virtual_size > flavor.disk_gib * GIB
    ):
        needed = math.ceil(image.virtual_size / GIB)
        problems.append(
            f"image {image.name} has a virtual size of {needed} GiB, more than the "
            f"flavor's {flavor.disk_gib} GiB disk"
        )
    if problems:
        raise ValidationError(
            {field: [f"Flavor {flavor.name} is too small: {'; '.join(problems)}."]}
        )


def _start_job(*, instance: Instance, kind: str, user, params: dict | None = None) -> Job:
    """Create the job (409 through JobConflict if one is active) and mark it current."""
    with transaction.atomic():
        job = job_create(
            kind=kind,
            target_type="instance",
            target_id=instance.id,
            target_name=instance.name,
            project=instance.project,
            user=user,
            params=params or {},
        )
        Instance.objects.filter(pk=instance.pk).update(current_job=job)
        instance.current_job = job
    return job


# Instances


def instance_create(
    *,
    user,
    name: str,
    image: Image,
    flavor: Flavor,
    project: Project | None = None,
    host: Host | None = None,
    network: str | None = None,
) -> tuple[Instance, Job]:
    """Validate, schedule and record the instance, then queue its provisioning job."""
    project = project or project_get_default()
    if not access.can_view(user, project):
        raise ValidationError({"project": ["Unknown project."]})
    _require_act(user, project)
    access.require_host_choice_allowed(user, host)
    name = validate_name(name)
    if Instance.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": [f"Project {project.name} already has an instance {name}."]})
    if image is None or not image_visible(user, image):
        raise ValidationError({"image": ["Unknown image."]})
    if image.status != Image.Status.ACTIVE:
        raise ValidationError({"image": [f"Image {image.name} is {image.status}, not active."]})
    check_flavor_fits_image(flavor, image)
    if network is not None:
        validate_name(network, "network")
    params = {"network": network} if network else {}
    try:
        with transaction.atomic():
            chosen = scheduler.select_host(flavor, pinned=host)
            # Lock the host row and check again: two creates at once cannot both take its
            # last free capacity (the second waits, then counts the first's instance).
            Host.objects.select_for_update().filter(pk=chosen.pk).exists()
            chosen = scheduler.select_host(flavor, pinned=chosen)
            instance = Instance(
                name=name,
                project=project,
                owner=user if user and user.is_authenticated else None,
                flavor=flavor,
                image=image,
                host=chosen,
                state=Instance.State.BUILDING,
            )
            instance.domain_name = f"cp-{instance.uuid}"
            # The related rows were just loaded and the name checked above; uniqueness is the
            # database's constraint (IntegrityError below): skip a query per foreign key.
            instance.full_clean(
                exclude=["project", "owner", "flavor", "image", "host", "current_job"],
                validate_unique=False,
                validate_constraints=False,
            )
            instance.save()
            job = _start_job(instance=instance, kind="instance.create", user=user, params=params)
    except scheduler.NoValidHost as exc:
        raise ValidationError(
            {"host" if host else "flavor": [_no_room_message(user, exc, flavor)]}
        ) from None
    except IntegrityError:
        raise ValidationError(
            {"name": [f"Project {project.name} already has an instance {name}."]}
        ) from None
    return instance, job


def instance_rename(*, user, instance: Instance, name: str) -> Instance:
    _require_act(user, instance)
    name = validate_name(name)
    if (
        Instance.objects.filter(project=instance.project, name=name)
        .exclude(pk=instance.pk)
        .exists()
    ):
        raise ValidationError(
            {"name": [f"Project {instance.project.name} already has an instance {name}."]}
        )
    instance.name = name
    instance.save(update_fields=["name", "updated_at"])
    return instance


def instance_action(*, user, instance: Instance, action: str, params: dict | None = None) -> Job:
    """start, shutdown, stop, reboot, reset, suspend, resume as a job."""
    if action not in POWER_ACTIONS:
        raise ValidationError({"action": [f"Unknown action {action!r}."]})
    _require_act(user, instance)
    params = dict(params or {})
    job_params: dict = {}
    if action == "shutdown":
        force_after = params.get("force_after")
        if force_after not in (None, ""):
            try:
                force_after = int(force_after)
            except (TypeError, ValueError):
                raise ValidationError({"force_after": ["A whole number of seconds."]}) from None
            if not 0 <= force_after <= MAX_FORCE_AFTER:
                raise ValidationError({"force_after": [f"Between 0 and {MAX_FORCE_AFTER}."]})
            job_params["force_after"] = force_after
    if instance.state in _GONE or instance.state == Instance.State.BUILDING:
        if instance.current_job_id is None:
            raise Conflict(f"Instance {instance.name} is {instance.state}; it cannot {action}.")
    elif instance.state not in _NEEDS[action] and instance.current_job_id is None:
        raise Conflict(
            f"Instance {instance.name} is {instance.get_state_display().lower()}; "
            f"it cannot {action} now."
        )
    _require_host_online(instance, user)
    return _start_job(instance=instance, kind=f"instance.{action}", user=user, params=job_params)


def instance_resize(*, user, instance: Instance, flavor: Flavor) -> Job:
    _require_act(user, instance)
    if flavor.pk == instance.flavor_id:
        raise ValidationError({"flavor": ["The instance already has this flavor."]})
    if flavor.disk_gib < instance.flavor.disk_gib:
        raise ValidationError(
            {
                "flavor": [
                    f"Disks only grow: {flavor.name} has {flavor.disk_gib} GiB, the "
                    f"instance has {instance.flavor.disk_gib} GiB."
                ]
            }
        )
    check_flavor_fits_image(flavor, instance.image)
    if instance.state != Instance.State.SHUTOFF and instance.current_job_id is None:
        raise Conflict(f"Instance {instance.name} must be shut off to be resized.")
    host = _require_host_online(instance, user)
    try:
        scheduler.check_resize(host, instance.flavor, flavor)
    except scheduler.NoValidHost as exc:
        raise ValidationError({"flavor": [_no_room_message(user, exc, flavor)]}) from None
    return _start_job(
        instance=instance, kind="instance.resize", user=user, params={"flavor": flavor.pk}
    )


def instance_delete(*, user, instance: Instance) -> Job:
    _require_act(user, instance)
    _require_host_online(instance, user)
    return _start_job(instance=instance, kind="instance.delete", user=user)


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
    running = job_active_for(target_type="instance", target_id=instance.pk)
    if running is not None:
        raise Conflict(f"Instance {instance.name} is busy with job {running.id} ({running.kind}).")
    log.warning(
        "instance %s (%s) forgotten by %s; host %s unreachable",
        instance.name, instance.uuid, user, host,
    )
    with transaction.atomic():
        Snapshot.objects.filter(instance=instance).delete()
        instance.delete()


# Snapshots


def snapshot_create(*, user, instance: Instance, name: str, description: str = "") -> Job:
    _require_act(user, instance)
    name = validate_name(name)
    description = (description or "").strip()
    if len(description) > 255:
        raise ValidationError({"description": ["At most 255 characters."]})
    if instance.snapshots.filter(name=name).exists():
        raise ValidationError(
            {"name": [f"Instance {instance.name} already has a snapshot {name}."]}
        )
    unsnappable = (*_GONE, Instance.State.BUILDING, Instance.State.ERROR)
    if instance.state in unsnappable and instance.current_job_id is None:
        raise Conflict(f"Instance {instance.name} is {instance.state}; no snapshot possible.")
    _require_host_online(instance, user)
    return _start_job(
        instance=instance,
        kind="instance.snapshot_create",
        user=user,
        params={"name": name, "description": description},
    )


def _snapshot_job(*, user, snapshot: Snapshot, kind: str) -> Job:
    instance = snapshot.instance
    _require_act(user, instance)
    _require_host_online(instance, user)
    return _start_job(
        instance=instance,
        kind=kind,
        user=user,
        params={"snapshot": snapshot.pk, "name": snapshot.name},
    )


def snapshot_revert(*, user, snapshot: Snapshot) -> Job:
    return _snapshot_job(user=user, snapshot=snapshot, kind="instance.snapshot_revert")


def snapshot_delete(*, user, snapshot: Snapshot) -> Job:
    return _snapshot_job(user=user, snapshot=snapshot, kind="instance.snapshot_delete")


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
    ips = domains.interface_addresses(uri, instance.domain_name) if details.active else []
    if ips != instance.ip_addresses:
        instance.ip_addresses = ips
        fields.append("ip_addresses")
    instance.save(update_fields=fields)
    return instance


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


def instance_adopt(
    *, user, host: Host, domain_name: str, project: Project | None = None, name: str = ""
) -> Instance:
    """Take a domain the panel does not manage under management (admins only)."""
    if not access.is_admin(user):
        raise PermissionDenied("Only administrators may adopt domains.")
    if host.status != Host.Status.ONLINE:
        raise HostUnreachable(f"Host {host.name} is {host.status}")
    if not domain_name or len(domain_name) > 128:
        raise ValidationError({"domain": ["A domain name is required."]})
    if Instance.objects.filter(host=host, domain_name=domain_name).exists():
        raise Conflict(f"Domain {domain_name} on {host.name} is already managed.")
    try:
        details = domains.domain_details(connection_uri(host), domain_name)
    except NotFound:
        raise ValidationError(
            {"domain": [f"Host {host.name} has no domain {domain_name}."]}
        ) from None
    if Instance.objects.filter(uuid=details.uuid).exists():
        raise Conflict(f"Domain {domain_name} (uuid {details.uuid}) is already managed.")
    project = project or project_get_default()
    disk_bytes = sum(d.capacity_bytes for d in details.disks if d.device == "disk")
    disk_gib = max(1, math.ceil(disk_bytes / GIB))
    flavor = _flavor_for(details.vcpus or 1, max(details.memory_mib, 16), disk_gib)
    name = validate_name(name) if name else _adopted_name(domain_name, project)
    volumes = [
        {"pool": d.pool, "name": d.volume, "path": d.path}
        for d in details.disks
        if d.device == "disk" and d.pool and d.volume
    ]
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
        volumes=volumes,
        adopted=True,
    )
    instance.full_clean(exclude=["uuid"])
    instance.save()
    return instance


def memory_bytes(flavor: Flavor) -> int:
    return flavor.ram_mib * MIB
