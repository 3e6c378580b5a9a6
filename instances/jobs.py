"""Job handlers for instances: provisioning, power, resize, snapshots, delete.

Each handler loads the instance, does its libvirt work through cloudpanel.virt, and always
ends by refreshing the instance's state from libvirt and clearing current_job.
"""

from __future__ import annotations

import functools
import logging
import random
import time

from django.db import transaction

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import JobContext, JobFailed, job_handler
from cloudpanel.virt import NotFound, VirtError, domain_xml, domains, storage
from hosts.selectors import GIB, MIB
from hosts.services import connection_uri
from images.models import Image
from images.replicas import image_ensure_replica

from .models import Flavor, Instance, Snapshot
from .scheduler import DEFAULT_POOL
from .services import instance_sync_state

log = logging.getLogger(__name__)

DEFAULT_NETWORK = "default"
START_TIMEOUT = 60.0
GENERIC_PROVISIONING_FAILURE = (
    "Provisioning failed on the host; an administrator can see the details"
)
SHUTDOWN_TIMEOUT = 120.0
POLL = 0.25


def on_abandoned(job: Job) -> None:
    """A job that ended without its handler finishing.

    Cancelled before it ran: nothing changed, except that an instance never provisioned can
    only be deleted. A dead worker's job: the instance's state is unknown, so it goes to
    error (its volumes stay listed, so delete can clean them up).
    """
    never_ran = job.status == Job.Status.CANCELLED and job.started_at is None
    if not never_ran or job.kind == "instance.create":
        reason = f"Job {job.id} ({job.kind}) was abandoned: {job.error}"
        Instance.objects.filter(pk=job.target_id).update(
            state=Instance.State.ERROR, state_reason=reason
        )
    Instance.objects.filter(pk=job.target_id, current_job_id=job.id).update(current_job=None)


def _finish(instance: Instance, job: Job, *, reason: str | None) -> None:
    try:
        instance_sync_state(instance=instance, reason=reason)
    finally:
        Instance.objects.filter(pk=instance.pk, current_job_id=job.id).update(current_job=None)


class ProvisioningFailed(JobFailed):
    """Provisioning failed and was rolled back: the instance stays in error with the reason."""


def instance_job(kind: str):
    """Register a handler `fn(job, ctx, instance)` with the bookkeeping every instance job needs."""

    def decorate(fn):
        @functools.wraps(fn)
        def handler(job: Job, ctx: JobContext):
            try:
                instance = Instance.objects.select_related("host", "flavor", "image").get(
                    pk=job.target_id
                )
            except Instance.DoesNotExist:
                what = job.target_name or job.target_id
                raise JobFailed(f"Instance {what} no longer exists", public=True) from None
            try:
                result = fn(job, ctx, instance)
            except Exception as exc:
                if not Instance.objects.filter(pk=instance.pk).exists():
                    raise
                if isinstance(exc, ProvisioningFailed):
                    Instance.objects.filter(pk=instance.pk, current_job_id=job.id).update(
                        current_job=None
                    )
                else:
                    _finish(instance, job, reason=f"{kind} failed: {exc}")
                raise
            if Instance.objects.filter(pk=instance.pk).exists():
                _finish(instance, job, reason="")
            return result

        job_handler(kind, on_abandoned=on_abandoned)(handler)
        return handler

    return decorate


def _uri(instance: Instance) -> str:
    if instance.host is None:
        raise JobFailed(f"Instance {instance.name} has no host", public=True)
    return connection_uri(instance.host)


def _wait(ctx: JobContext, uri: str, name: str, states: set[str], timeout: float) -> bool:
    """Poll libvirt until the domain is in `states`; False after `timeout` (cancellable)."""
    deadline = time.monotonic() + timeout
    while True:
        if domains.domain_state(uri, name) in states:
            return True
        if time.monotonic() >= deadline:
            return False
        ctx.check_cancelled()
        time.sleep(POLL)


def _random_mac() -> str:
    # QEMU/KVM's locally administered prefix.
    return "52:54:00:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))


def _record_volume(instance: Instance, entry: dict) -> None:
    instance.volumes = [*instance.volumes, entry]
    instance.save(update_fields=["volumes", "updated_at"])


def _forget_volume(instance: Instance, name: str) -> None:
    instance.volumes = [v for v in instance.volumes if v.get("name") != name]
    instance.save(update_fields=["volumes", "updated_at"])


# Provisioning


def _provision(job: Job, ctx: JobContext, instance: Instance, created: dict) -> dict:
    host, flavor, image = instance.host, instance.flavor, instance.image
    uri = _uri(instance)
    pool = DEFAULT_POOL
    if image is None:
        raise JobFailed("The instance has no image", public=True)
    # Steps naming hosts, pools, disks or domains are for admins; tenants get the `public` text.
    ctx.progress(
        5,
        f"Replicating image {image.name} to host {host.name}",
        public=f"Copying image {image.name} to the host",
    )
    replica = image_ensure_replica(image=image, host=host, pool=pool, ctx=ctx)
    ctx.check_cancelled()

    capacity = flavor.disk_gib * GIB
    disk_name = f"{instance.domain_name}-disk0.qcow2"
    ctx.progress(40, f"Creating disk {disk_name} in pool {pool}", public="Creating the disk")
    # Recorded before it exists: a crash in between leaves nothing untracked.
    _record_volume(instance, {"pool": pool, "name": disk_name, "role": "root"})
    created["volumes"].append(disk_name)
    if image.disk_format == Image.Format.QCOW2:
        vol = storage.create_overlay_volume(
            uri, pool, disk_name, replica.path, "qcow2", max(capacity, image.virtual_size or 0)
        )
    elif image.disk_format == Image.Format.RAW:
        vol = storage.clone_volume(
            uri,
            pool,
            replica.volume,
            disk_name,
            capacity_bytes=capacity,
            fmt="qcow2",
            source_pool=replica.pool,
        )
        if vol.capacity_bytes < capacity:
            # A converting clone keeps the source's size; grow it to the flavor's disk.
            domains.resize_volume(uri, pool, disk_name, capacity)
    else:  # ISO: an empty disk to install onto, the ISO as a cdrom
        vol = storage.create_volume(uri, pool, disk_name, capacity, fmt="qcow2")
    instance.volumes = [
        {**v, "path": vol.path} if v.get("name") == disk_name else v for v in instance.volumes
    ]
    instance.save(update_fields=["volumes", "updated_at"])

    disks = [domain_xml.DiskSpec(path=vol.path, format="qcow2")]
    if image.disk_format == Image.Format.ISO:
        disks.append(
            domain_xml.DiskSpec(
                path=replica.path,
                format="raw",
                device="cdrom",
                target="sda",
                bus="sata",
                readonly=True,
            )
        )

    requested = job.params.get("network")
    network = requested or DEFAULT_NETWORK
    notes = []
    if not requested and not domains.network_active(uri, network):
        # No libvirt network here: user-mode networking still gives the guest outbound access.
        network = None
        notes.append(
            f"host {host.name} has no active network '{DEFAULT_NETWORK}'; using a user-mode NIC"
        )
        ctx.log(notes[-1], public="no virtual network on the host; using a user-mode NIC")
    mac = _random_mac()
    spec = domain_xml.DomainSpec(
        name=instance.domain_name,
        uuid=str(instance.uuid),
        vcpus=flavor.vcpus,
        memory_mib=flavor.ram_mib,
        domain_type=host.domain_type,
        arch=(host.capabilities or {}).get("arch") or "x86_64",
        disks=disks,
        nics=[domain_xml.NicSpec(mac=mac, network=network)],
        vnc_listen=host.console_address or "127.0.0.1",
        title=instance.name,
        metadata={"instance": str(instance.pk), "project": instance.project.name},
    )
    ctx.progress(
        60,
        f"Defining domain {instance.domain_name} ({spec.domain_type})",
        public="Defining the virtual machine",
    )
    domains.define_domain(uri, domain_xml.build_domain(spec))
    created["domain"] = True
    instance.mac_address = mac
    instance.save(update_fields=["mac_address", "updated_at"])

    ctx.progress(75, "Starting the domain", public=True)
    domains.start_domain(uri, instance.domain_name)
    ctx.progress(85, "Waiting for the domain to run", public=True)
    if not _wait(ctx, uri, instance.domain_name, {"running"}, START_TIMEOUT):
        state = domains.domain_state(uri, instance.domain_name)
        raise JobFailed(
            f"The domain did not reach running within {START_TIMEOUT:g} s ({state})", public=True
        )
    return {
        "domain": instance.domain_name,
        "domain_type": spec.domain_type,
        "network": network or "user",
        "notes": notes,
    }


def _rollback(instance: Instance, created: dict, ctx: JobContext) -> list[str]:
    """Remove what provisioning made; returns what could not be removed."""
    uri = connection_uri(instance.host)
    leftovers = []
    if created.get("domain"):
        try:
            domains.undefine_domain(uri, instance.domain_name)
        except VirtError as exc:
            leftovers.append(f"domain {instance.domain_name} ({exc})")
    for name in created["volumes"]:
        pool = next((v.get("pool") for v in instance.volumes if v.get("name") == name), None)
        try:
            storage.delete_volume(uri, pool or DEFAULT_POOL, name)
            _forget_volume(instance, name)
        except VirtError as exc:
            leftovers.append(f"volume {name} ({exc})")
    ctx.log(
        "rolled back" + (f"; left behind: {', '.join(leftovers)}" if leftovers else ""),
        public="rolled back" + ("; some parts could not be removed" if leftovers else ""),
    )
    return leftovers


@instance_job("instance.create")
def create_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    created: dict = {"domain": False, "volumes": []}
    try:
        return _provision(job, ctx, instance, created)
    except BaseException as exc:
        message = str(exc) or exc.__class__.__name__
        try:
            leftovers = _rollback(instance, created, ctx)
        except Exception as rb_exc:  # rollback must not hide the original failure
            log.exception("rollback of %s failed", instance)
            leftovers = [str(rb_exc)]
        reason = f"Provisioning failed: {message}"
        public = getattr(exc, "public_message", "")
        public = f"Provisioning failed: {public}" if public else GENERIC_PROVISIONING_FAILURE
        if leftovers:
            reason += f" (could not remove: {', '.join(leftovers)})"
        else:
            reason += " (everything created was removed)"
            public += " (everything created was removed)"
        instance.state = Instance.State.ERROR
        instance.state_reason = reason
        instance.save(update_fields=["state", "state_reason", "updated_at"])
        if isinstance(exc, Exception):
            raise ProvisioningFailed(reason, public=public) from exc
        raise


# Power


@instance_job("instance.start")
def start_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    uri = _uri(instance)
    state = domains.domain_state(uri, instance.domain_name)
    if state == "paused":
        raise JobFailed("The instance is paused; resume it instead", public=True)
    if state != "running":
        ctx.progress(20, "Starting the domain", public=True)
        domains.start_domain(uri, instance.domain_name)
    if not _wait(ctx, uri, instance.domain_name, {"running"}, START_TIMEOUT):
        raise JobFailed(f"The domain did not reach running within {START_TIMEOUT:g} s", public=True)
    return {"state": "running"}


@instance_job("instance.shutdown")
def shutdown_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    uri = _uri(instance)
    if domains.domain_state(uri, instance.domain_name) == "shutoff":
        return {"state": "shutoff"}
    force_after = job.params.get("force_after")
    timeout = float(force_after) if force_after is not None else SHUTDOWN_TIMEOUT
    ctx.progress(10, "Asking the guest to shut down (ACPI)", public=True)
    domains.shutdown_domain(uri, instance.domain_name)
    if _wait(ctx, uri, instance.domain_name, {"shutoff"}, timeout):
        return {"state": "shutoff", "forced": False}
    if force_after is None:
        raise JobFailed(
            f"The guest did not shut down within {timeout:g} s; stop it to power it off",
            public=True,
        )
    ctx.progress(70, f"No shutdown after {timeout:g} s: powering off", public=True)
    domains.destroy_domain(uri, instance.domain_name)
    if not _wait(ctx, uri, instance.domain_name, {"shutoff"}, 30):
        raise JobFailed("The domain did not power off", public=True)
    return {"state": "shutoff", "forced": True}


def _power(
    ctx: JobContext,
    instance: Instance,
    step: str,
    operation,
    *,
    until: str | None = None,
    failure: str = "",
) -> dict:
    """Run one libvirt power operation; with `until`, wait up to 30 s for that state.
    (`step` and `failure` name no host: tenants see them.)"""
    uri = _uri(instance)
    ctx.progress(20, step, public=True)
    operation(uri, instance.domain_name)
    if until is None:
        return {"state": domains.domain_state(uri, instance.domain_name)}
    if not _wait(ctx, uri, instance.domain_name, {until}, 30):
        raise JobFailed(failure, public=True)
    return {"state": until}


@instance_job("instance.stop")
def stop_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    return _power(
        ctx,
        instance,
        "Powering off",
        domains.destroy_domain,
        until="shutoff",
        failure="The domain did not power off",
    )


@instance_job("instance.reboot")
def reboot_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    return _power(ctx, instance, "Asking the guest to reboot (ACPI)", domains.reboot_domain)


@instance_job("instance.reset")
def reset_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    return _power(ctx, instance, "Resetting", domains.reset_domain)


@instance_job("instance.suspend")
def suspend_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    return _power(
        ctx,
        instance,
        "Pausing",
        domains.suspend_domain,
        until="paused",
        failure="The domain did not pause",
    )


@instance_job("instance.resume")
def resume_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    return _power(
        ctx,
        instance,
        "Resuming",
        domains.resume_domain,
        until="running",
        failure="The domain did not resume",
    )


@instance_job("instance.resize")
def resize_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    uri = _uri(instance)
    try:
        flavor = Flavor.objects.get(pk=job.params["flavor"])
    except (Flavor.DoesNotExist, KeyError):
        raise JobFailed("The requested flavor no longer exists", public=True) from None
    if domains.domain_state(uri, instance.domain_name) != "shutoff":
        raise JobFailed("The instance must be shut off to be resized", public=True)
    ctx.progress(20, f"Setting {flavor.vcpus} vCPUs and {flavor.ram_mib} MiB", public=True)
    domains.set_resources(uri, instance.domain_name, vcpus=flavor.vcpus, memory_mib=flavor.ram_mib)
    root = next((v for v in instance.volumes if v.get("role") == "root"), None)
    if root is None and instance.volumes:
        root = instance.volumes[0]
    grown = False
    if root and flavor.disk_gib > instance.flavor.disk_gib:
        ctx.progress(
            60,
            f"Growing disk {root['name']} to {flavor.disk_gib} GiB",
            public=f"Growing the disk to {flavor.disk_gib} GiB",
        )
        domains.resize_volume(uri, root["pool"], root["name"], flavor.disk_gib * GIB)
        grown = True
    old = instance.flavor.name
    instance.flavor = flavor
    instance.save(update_fields=["flavor", "updated_at"])
    return {
        "from": old,
        "to": flavor.name,
        "disk_grown": grown,
        "memory_bytes": flavor.ram_mib * MIB,
    }


# Snapshots


@instance_job("instance.snapshot_create")
def create_snapshot(job: Job, ctx: JobContext, instance: Instance) -> dict:
    uri = _uri(instance)
    name = job.params["name"]
    ctx.progress(20, f"Taking snapshot {name}", public=True)
    details = domains.snapshot_create(
        uri, instance.domain_name, name, job.params.get("description", "")
    )
    snap = Snapshot.objects.create(
        instance=instance,
        name=details.name,
        description=details.description,
        domain_state=details.state,
        created_by=job.requested_by,
    )
    return {"snapshot": snap.pk, "name": snap.name}


@instance_job("instance.snapshot_revert")
def revert_snapshot(job: Job, ctx: JobContext, instance: Instance) -> dict:
    uri = _uri(instance)
    name = job.params["name"]
    ctx.progress(20, f"Reverting to snapshot {name}", public=True)
    domains.snapshot_revert(uri, instance.domain_name, name)
    return {"snapshot": job.params.get("snapshot"), "name": name}


@instance_job("instance.snapshot_delete")
def delete_snapshot(job: Job, ctx: JobContext, instance: Instance) -> dict:
    uri = _uri(instance)
    name = job.params["name"]
    ctx.progress(20, f"Deleting snapshot {name}", public=True)
    try:
        domains.snapshot_delete(uri, instance.domain_name, name)
    except NotFound:
        ctx.log(f"snapshot {name} was already gone in libvirt", public=True)
    Snapshot.objects.filter(pk=job.params.get("snapshot"), instance=instance).delete()
    return {"snapshot": job.params.get("snapshot"), "name": name}


# Delete


@instance_job("instance.delete")
def delete_instance(job: Job, ctx: JobContext, instance: Instance) -> dict:
    uri = _uri(instance)
    Instance.objects.filter(pk=instance.pk).update(state=Instance.State.DELETING)
    instance.state = Instance.State.DELETING
    ctx.progress(
        10,
        f"Powering off and undefining {instance.domain_name}",
        public="Powering off and removing the virtual machine",
    )
    existed = domains.undefine_domain(uri, instance.domain_name)
    if domains.domain_exists(uri, instance.domain_name):
        raise JobFailed(f"Domain {instance.domain_name} is still defined after undefine")
    removed = []
    for i, volume in enumerate(list(instance.volumes)):
        ctx.progress(
            40 + 40 * i // max(len(instance.volumes), 1),
            f"Deleting volume {volume['name']}",
            public=f"Deleting disk {i + 1}",
        )
        storage.delete_volume(uri, volume.get("pool") or DEFAULT_POOL, volume["name"])
        _forget_volume(instance, volume["name"])
        removed.append(volume["name"])
    with transaction.atomic():
        Snapshot.objects.filter(instance=instance).delete()
        instance.delete()
    return {"domain_existed": existed, "volumes_deleted": removed}
