"""Resize: a shut-off instance gets another flavor's vCPUs and RAM, and its root disk grows
(disks only grow)."""

from __future__ import annotations

from django.db import transaction

from cloudpanel.errors import Conflict, InvalidInput
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobContext, JobFailed
from cloudpanel.projects.quotas import quota_reserve, resize_needs
from cloudpanel.virt import domains, storage
from hosts.selectors import GIB, MIB

from .. import scheduler
from ..models import Flavor, Instance
from ..rules import check_flavor_fits_image, no_room_message, require_act, require_host_online
from ..volumes import root_volume
from .base import InstanceOperation, uri_of


class Resize(InstanceOperation):
    kind = "instance.resize"

    def check(self, *, user, target: Instance, flavor: Flavor) -> dict:
        require_act(user, target)
        if flavor.pk == target.flavor_id:
            raise InvalidInput({"flavor": ["The instance already has this flavor."]})
        if flavor.disk_gib < target.flavor.disk_gib:
            raise InvalidInput(
                {
                    "flavor": [
                        f"Disks only grow: {flavor.name} has {flavor.disk_gib} GiB, the "
                        f"instance has {target.flavor.disk_gib} GiB."
                    ]
                }
            )
        check_flavor_fits_image(flavor, target.image)
        if target.state != Instance.State.SHUTOFF and target.current_job_id is None:
            raise Conflict(f"Instance {target.name} must be shut off to be resized.")
        host = require_host_online(target, user)
        try:
            scheduler.check_resize(host, target.flavor, flavor)
        except scheduler.NoValidHost as exc:
            raise InvalidInput({"flavor": [no_room_message(user, exc, flavor)]}) from None
        return {"flavor": flavor.pk}

    def start(self, *, user, target: Instance, flavor: Flavor, **params) -> Job:
        job_params = self.check(user=user, target=target, flavor=flavor, **params)
        with transaction.atomic():
            # What the new flavor adds counts (locks the project: concurrent resizes in turn).
            quota_reserve(target.project, **resize_needs(target.flavor, flavor))
            return self.create_job(user=user, target=target, params=job_params)

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        try:
            flavor = Flavor.objects.get(pk=job.params["flavor"])
        except (Flavor.DoesNotExist, KeyError):
            raise JobFailed("The requested flavor no longer exists", public=True) from None
        if domains.domain_state(uri, instance.domain_name) != "shutoff":
            raise JobFailed("The instance must be shut off to be resized", public=True)
        ctx.progress(20, f"Setting {flavor.vcpus} vCPUs and {flavor.ram_mib} MiB", public=True)
        domains.set_resources(
            uri, instance.domain_name, vcpus=flavor.vcpus, memory_mib=flavor.ram_mib
        )
        root = root_volume(instance)
        grown = False
        if root and flavor.disk_gib > instance.flavor.disk_gib:
            ctx.progress(
                60,
                f"Growing disk {root.name} to {flavor.disk_gib} GiB",
                public=f"Growing the disk to {flavor.disk_gib} GiB",
            )
            domains.resize_volume(uri, root.pool, root.name, flavor.disk_gib * GIB)
            root.capacity_bytes = storage.volume_info(uri, root.pool, root.name).capacity_bytes
            root.save(update_fields=["capacity_bytes"])
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


RESIZE = register(Resize())
