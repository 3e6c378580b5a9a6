"""Delete: power off and undefine the domain, delete its volumes by their rows, then the
instance. Interrupted, it can be run again: every step tolerates what is already gone."""

from __future__ import annotations

from django.db import transaction

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobContext, JobFailed
from cloudpanel.virt import domains

from ..models import Instance, Snapshot, Volume
from ..rules import require_act, require_host_online
from ..signals import instance_changed
from ..volumes import volume_remove
from .base import InstanceOperation, uri_of


class Delete(InstanceOperation):
    kind = "instance.delete"

    def check(self, *, user, target: Instance) -> dict:
        require_act(user, target)
        require_host_online(target, user)
        return {}

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        Instance.objects.filter(pk=instance.pk).update(state=Instance.State.DELETING)
        instance.state = Instance.State.DELETING
        instance_changed.send(sender=Instance, instance=instance)
        ctx.progress(
            10,
            f"Powering off and undefining {instance.domain_name}",
            public="Powering off and removing the virtual machine",
        )
        existed = domains.undefine_domain(uri, instance.domain_name)
        if domains.domain_exists(uri, instance.domain_name):
            raise JobFailed(f"Domain {instance.domain_name} is still defined after undefine")
        # Backups outlive their instance: their copies stay (Volume.instance becomes null).
        volumes = list(instance.volumes.exclude(role=Volume.Role.BACKUP))
        removed = []
        for i, volume in enumerate(volumes):
            ctx.progress(
                40 + 40 * i // max(len(volumes), 1),
                f"Deleting volume {volume.name}",
                public=f"Deleting disk {i + 1}",
            )
            volume_remove(uri, volume)
            removed.append(volume.name)
        instance_id = instance.pk
        with transaction.atomic():
            Snapshot.objects.filter(instance=instance).delete()
            instance.delete()
        # Pages drop the row: the last event of an instance says "deleted".
        instance.pk, instance.state = instance_id, "deleted"
        instance_changed.send(sender=Instance, instance=instance)
        return {"domain_existed": existed, "volumes_deleted": removed}


DELETE = register(Delete())
