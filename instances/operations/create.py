"""Create: validate, schedule and record the instance, then provision it on its host.

Provisioning copies the image to the host (images.replicas), makes the root disk, defines
and starts the domain. A failure at any step removes what was made and leaves the instance
in error with the reason; what could not be removed is named there, and its volume rows stay
so that delete can finish the job.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile

from django.db import IntegrityError, transaction

from cloudpanel.errors import InvalidInput
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobContext, JobFailed
from cloudpanel.projects import access
from cloudpanel.projects.models import Project
from cloudpanel.projects.quotas import instance_needs, quota_reserve
from cloudpanel.projects.services import project_for_create
from cloudpanel.virt import VirtError, domain_xml, domains, storage
from hosts.connection import connection_uri, console_address
from hosts.models import Host
from hosts.selectors import GIB
from images.models import Image
from images.replicas import image_ensure_replica

from .. import scheduler, seed
from ..keypairs import keypairs_usable
from ..models import Flavor, Instance, Volume
from ..rules import (
    check_flavor_fits_image,
    image_visible,
    no_room_message,
    require_act,
    validate_name,
)
from ..volumes import volume_plan, volume_ready, volume_remove
from .base import InstanceOperation, RolledBack, uri_of, wait_for
from .power import START_TIMEOUT

log = logging.getLogger(__name__)

GENERIC_PROVISIONING_FAILURE = (
    "Provisioning failed on the host; an administrator can see the details"
)


def random_mac() -> str:
    # QEMU/KVM's locally administered prefix.
    return "52:54:00:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))


def domain_spec(
    instance: Instance, host: Host, *, disks: list, mac: str, network: str | None
) -> domain_xml.DomainSpec:
    """The domain of `instance` on `host`: its flavor, image firmware, disks and one NIC."""
    flavor, image = instance.flavor, instance.image
    return domain_xml.DomainSpec(
        name=instance.domain_name,
        uuid=str(instance.uuid),
        vcpus=flavor.vcpus,
        memory_mib=flavor.ram_mib,
        domain_type=host.domain_type,
        arch=(host.capabilities or {}).get("arch") or "x86_64",
        disks=disks,
        nics=[domain_xml.NicSpec(mac=mac, network=network)],
        vnc_listen=console_address(host),
        title=instance.name,
        metadata={"instance": str(instance.pk), "project": instance.project.name},
        firmware=(image.firmware if image is not None else "") or "bios",
    )


def disk_layout(
    root: str, root_bus: str, *, seed: str | None = None, iso: str | None = None
) -> list[domain_xml.DiskSpec]:
    """The root disk on the image's bus, then the cloud-init seed and an installer ISO as
    read-only cdroms. The seed is on virtio-scsi: Debian's cloud kernel (and others built for
    clouds) has no SATA/AHCI driver, and a seed it cannot see leaves the guest without its
    identity. An installer's full kernel reads a SATA cdrom."""
    names = iter(["sda", "sdb", "sdc"])  # sd* targets are shared by the sata and scsi buses
    disks = [
        domain_xml.DiskSpec(
            path=root, format="qcow2", bus=root_bus,
            target="vda" if root_bus == "virtio" else next(names),
        )
    ]  # fmt: skip
    if iso:
        disks.append(
            domain_xml.DiskSpec(
                path=iso, format="raw", device="cdrom", target=next(names), bus="sata",
                readonly=True, bootable=True,
            )
        )  # fmt: skip
    if seed:
        disks.append(
            domain_xml.DiskSpec(
                path=seed, format="raw", device="cdrom", target=next(names), bus="scsi",
                readonly=True,
            )
        )  # fmt: skip
    return disks


class Create(InstanceOperation):
    kind = "instance.create"
    leaves_error_when_never_run = True

    def check(
        self,
        *,
        user,
        target=None,
        name: str,
        image: Image | None,
        flavor: Flavor,
        project: Project | None = None,
        host: Host | None = None,
        network: str | None = None,
        keypairs: list[int] | None = None,
        user_data: str | bytes | None = None,
        hostname: str | None = None,
        password: str | None = None,
    ) -> dict:
        if not access.can_view(user, project):
            raise InvalidInput({"project": ["Unknown project."]})
        require_act(user, project)
        access.require_host_choice_allowed(user, host)
        name = validate_name(name)
        if Instance.objects.filter(project=project, name=name).exists():
            raise InvalidInput(
                {"name": [f"Project {project.name} already has an instance {name}."]}
            )
        if image is None or not image_visible(user, image):
            raise InvalidInput({"image": ["Unknown image."]})
        if image.status != Image.Status.ACTIVE:
            raise InvalidInput({"image": [f"Image {image.name} is {image.status}, not active."]})
        check_flavor_fits_image(flavor, image)
        if network is not None:
            validate_name(network, "network")
        params: dict = {"network": network} if network else {}
        identity = self._identity(
            user,
            image,
            name,
            keypairs=keypairs,
            user_data=user_data,
            hostname=hostname,
            password=password,
        )
        if identity is not None:
            params["seed"] = identity
        return params

    @staticmethod
    def _identity(user, image: Image, name: str, *, keypairs, user_data, hostname, password):
        """What the guest's NoCloud seed will say, checked; None when it gets no seed.

        The clear password stops here: the job carries only its SHA-512 crypt hash.
        """
        given = bool(keypairs) or bool(user_data) or bool(hostname) or bool(password)
        # Images say whether they run cloud-init; before they could, a seed was made when
        # the caller gave the guest something to be told.
        runs_cloud_init = getattr(image, "cloud_init", None)
        if runs_cloud_init is False:
            if given:
                field = next(
                    f
                    for f, v in (
                        ("keypairs", keypairs),
                        ("user_data", user_data),
                        ("hostname", hostname),
                        ("password", password),
                    )
                    if v
                )
                raise InvalidInput(
                    {field: [f"Image {image.name} does not run cloud-init: nothing would read it."]}
                )
            return None
        if runs_cloud_init is None and not given:
            return None
        if password and getattr(image, "default_user", None) == "":
            # Images that name their default user: without one there is nobody to set it for.
            raise InvalidInput(
                {"password": [f"Image {image.name} names no default user to set a password for."]}
            )
        keys = keypairs_usable(user, keypairs)
        return {
            "hostname": seed.validate_hostname(hostname)
            if hostname
            else seed.hostname_from_name(name),
            "keypairs": [k.pk for k in keys],
            "ssh_keys": [k.public_key for k in keys],
            "user_data": seed.validate_user_data(user_data),
            "password_hash": seed.validate_password(password),
        }

    def start(self, *, user, target=None, **params) -> Job:
        """Check, place and record the instance with its job; the job's target is it."""
        params["project"] = project_for_create(user, params.get("project"))
        job_params = self.check(user=user, **params)  # permission first, then the input
        name = validate_name(params["name"])
        project, flavor, host = params["project"], params["flavor"], params.get("host")
        try:
            with transaction.atomic():
                # The project's row lock, then its quota: concurrent creates count in turn.
                quota_reserve(project, **instance_needs(flavor))
                chosen = scheduler.select_host(flavor, pinned=host)
                # Lock the host row and check again: two creates at once cannot both take
                # its last free capacity (the second waits, then counts the first's).
                Host.objects.select_for_update().filter(pk=chosen.pk).exists()
                chosen = scheduler.select_host(flavor, pinned=chosen)
                instance = self._record(user, name, project, flavor, params["image"], chosen)
                job = self.create_job(user=user, target=instance, params=job_params)
        except scheduler.NoValidHost as exc:
            raise InvalidInput(
                {"host" if host else "flavor": [no_room_message(user, exc, flavor)]}
            ) from None
        except IntegrityError:
            raise InvalidInput(
                {"name": [f"Project {project.name} already has an instance {name}."]}
            ) from None
        return job

    @staticmethod
    def _record(user, name, project, flavor, image, host) -> Instance:
        instance = Instance(
            name=name,
            project=project,
            owner=user if user and user.is_authenticated else None,
            flavor=flavor,
            image=image,
            host=host,
            state=Instance.State.BUILDING,
        )
        instance.domain_name = f"cp-{instance.uuid}"
        # The related rows were just loaded and the name checked: uniqueness is the
        # database's constraint (IntegrityError in start); skip a query per foreign key.
        instance.full_clean(
            exclude=["project", "owner", "flavor", "image", "host", "current_job"],
            validate_unique=False,
            validate_constraints=False,
        )
        instance.save()
        return instance

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        made: dict = {"domain": False, "volumes": []}
        try:
            return self._provision(job, ctx, instance, made)
        except BaseException as exc:
            self._fail(ctx, instance, made, exc)
            raise

    def _provision(self, job: Job, ctx: JobContext, instance: Instance, made: dict) -> dict:
        host, flavor, image = instance.host, instance.flavor, instance.image
        uri = uri_of(instance)
        pool = host.default_pool
        replica = self._root_source(ctx, instance, host, pool)
        ctx.check_cancelled()

        capacity = flavor.disk_gib * GIB
        disk_name = f"{instance.domain_name}-disk0.qcow2"
        ctx.progress(40, f"Creating disk {disk_name} in pool {pool}", public="Creating the disk")
        root = volume_plan(
            instance=instance, pool=pool, name=disk_name, role=Volume.Role.ROOT, capacity=capacity
        )
        made["volumes"].append(root)
        volume_ready(root, self._make_root_disk(uri, pool, disk_name, capacity, image, replica))

        seed_path = None
        if job.params.get("seed"):
            ctx.check_cancelled()
            ctx.progress(
                50,
                f"Writing the cloud-init seed to pool {pool}",
                public="Writing the cloud-init seed",
            )
            seed_path = self._make_seed(uri, pool, instance, job.params["seed"], made).path
        is_iso = replica is not None and image.disk_format == Image.Format.ISO
        bus = (image.disk_bus if image is not None else "") or "virtio"
        disks = disk_layout(root.path, bus, seed=seed_path, iso=replica.path if is_iso else None)
        network, notes = self._network(job, ctx, uri, host)
        mac = random_mac()
        spec = domain_spec(instance, host, disks=disks, mac=mac, network=network)
        # One step for both: defining takes milliseconds, and every step is a database
        # write and a broadcast.
        ctx.progress(
            60,
            f"Defining and starting domain {instance.domain_name} ({spec.domain_type})",
            public="Defining the virtual machine and starting it",
        )
        domains.define_domain(uri, domain_xml.build_domain(spec))
        made["domain"] = True
        instance.mac_address = mac  # written with the final state (known_state)
        domains.start_domain(uri, instance.domain_name)
        # libvirt's create returns once the vCPUs run: this wait almost always ends at its
        # first read; a domain that comes up paused or slowly wakes it by its event.
        waited = wait_for(ctx, uri, instance.domain_name, {"running"}, START_TIMEOUT)
        if not waited:
            raise JobFailed(
                f"The domain did not reach running within {START_TIMEOUT:g} s ({waited.state})",
                public=True,
            )
        return {
            "domain": instance.domain_name,
            "domain_type": spec.domain_type,
            "network": network or "user",
            "notes": notes,
            "state": waited.state,
        }

    def _root_source(self, ctx: JobContext, instance: Instance, host: Host, pool: str):
        """The image's replica on the host that the root disk is made from (None: the
        subclass makes the root disk from something else)."""
        image = instance.image
        if image is None:
            raise JobFailed("The instance has no image", public=True)
        # Steps naming hosts, pools, disks or domains are for admins; tenants get `public`.
        ctx.progress(
            5,
            f"Replicating image {image.name} to host {host.name}",
            public=f"Copying image {image.name} to the host",
        )
        return image_ensure_replica(image=image, host=host, pool=pool, ctx=ctx)

    def known_state(self, result: dict | None) -> str | None:
        # Just read from libvirt by the wait. Reading the domain back would also ask its
        # agent and the DHCP leases for addresses, which a guest started a moment ago has
        # not got yet (the watcher and reconcile fill them in).
        return (result or {}).get("state")

    @staticmethod
    def _make_seed(uri: str, pool: str, instance: Instance, identity: dict, made: dict) -> Volume:
        """Build the NoCloud seed, record its volume row, then create and fill the volume."""
        image = instance.image
        data = seed.build_seed_iso(
            seed.seed_files(
                instance_id=str(instance.uuid),
                hostname=identity["hostname"],
                ssh_keys=identity.get("ssh_keys") or [],
                password_hash=identity.get("password_hash"),
                default_user=getattr(image, "default_user", "") or None,
                user_text=identity.get("user_data") or "",
            )
        )
        name = f"{instance.domain_name}-seed.iso"
        volume = volume_plan(
            instance=instance,
            pool=pool,
            name=name,
            role=Volume.Role.CDROM,
            fmt="raw",
            capacity=len(data),
        )
        made["volumes"].append(volume)
        storage.create_volume(uri, pool, name, len(data), fmt="raw")
        # The upload stream reads a file; the seed holds the password hash, so the file is
        # private (mkstemp: mode 0600) and removed at once.
        fd, path = tempfile.mkstemp(prefix="cloudpanel-seed-", suffix=".iso")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            uploaded = storage.upload_volume(uri, pool, name, path, sparse=False)
        finally:
            os.unlink(path)
        return volume_ready(volume, uploaded.volume)

    @staticmethod
    def _make_root_disk(uri, pool, name, capacity, image: Image, replica):
        if image.disk_format == Image.Format.QCOW2:
            return storage.create_overlay_volume(
                uri, pool, name, replica.path, "qcow2", max(capacity, image.virtual_size or 0)
            )
        if image.disk_format == Image.Format.RAW:
            info = storage.clone_volume(
                uri,
                pool,
                replica.volume,
                name,
                capacity_bytes=capacity,
                fmt="qcow2",
                source_pool=replica.pool,
            )
            if info.capacity_bytes < capacity:
                # A converting clone keeps the source's size; grow it to the flavor's disk.
                domains.resize_volume(uri, pool, name, capacity)
                info = storage.volume_info(uri, pool, name)
            return info
        # ISO: an empty disk to install onto, the ISO as a cdrom
        return storage.create_volume(uri, pool, name, capacity, fmt="qcow2")

    @staticmethod
    def _network(job: Job, ctx: JobContext, uri: str, host: Host) -> tuple[str | None, list]:
        requested = job.params.get("network")
        network = requested or host.default_network
        notes = []
        if not requested and not domains.network_active(uri, network):
            # No libvirt network here: user-mode networking still gives the guest outbound
            # access.
            notes.append(
                f"host {host.name} has no active network '{network}'; using a user-mode NIC"
            )
            ctx.log(notes[-1], public="no virtual network on the host; using a user-mode NIC")
            network = None
        return network, notes

    def _fail(self, ctx: JobContext, instance: Instance, made: dict, exc: BaseException):
        message = str(exc) or exc.__class__.__name__
        try:
            leftovers = self._rollback(instance, made, ctx)
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
            raise RolledBack(reason, public=public) from exc

    @staticmethod
    def _rollback(instance: Instance, made: dict, ctx: JobContext) -> list[str]:
        """Remove what provisioning made; returns what could not be removed."""
        uri = connection_uri(instance.host)
        leftovers = []
        if made.get("domain"):
            try:
                domains.undefine_domain(uri, instance.domain_name)
            except VirtError as exc:
                leftovers.append(f"domain {instance.domain_name} ({exc})")
        for volume in made["volumes"]:
            try:
                volume_remove(uri, volume)
            except VirtError as exc:
                leftovers.append(f"volume {volume.name} ({exc})")
        ctx.log(
            "rolled back" + (f"; left behind: {', '.join(leftovers)}" if leftovers else ""),
            public="rolled back" + ("; some parts could not be removed" if leftovers else ""),
        )
        return leftovers


CREATE = register(Create())
