"""Snapshots: take, revert to and delete internal (qcow2) snapshots of an instance."""

from __future__ import annotations

from cloudpanel.errors import Conflict, InvalidInput
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobContext
from cloudpanel.virt import NotFound, domains

from ..models import Instance, Snapshot
from ..rules import GONE, require_act, require_host_online, validate_name
from .base import InstanceOperation, uri_of

# States with no disk state worth keeping, or none at all.
_UNSNAPPABLE = (*GONE, Instance.State.BUILDING, Instance.State.ERROR)


class TakeSnapshot(InstanceOperation):
    kind = "instance.snapshot_create"

    def check(self, *, user, target: Instance, name: str, description: str = "") -> dict:
        require_act(user, target)
        name = validate_name(name)
        description = (description or "").strip()
        if len(description) > 255:
            raise InvalidInput({"description": ["At most 255 characters."]})
        if target.snapshots.filter(name=name).exists():
            raise InvalidInput({"name": [f"Instance {target.name} already has a snapshot {name}."]})
        if target.state in _UNSNAPPABLE and target.current_job_id is None:
            raise Conflict(f"Instance {target.name} is {target.state}; no snapshot possible.")
        require_host_online(target, user)
        return {"name": name, "description": description}

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
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


class _OnSnapshot(InstanceOperation):
    """An operation on one existing snapshot; its target is the snapshot's instance."""

    def check(self, *, user, target: Instance, snapshot: Snapshot) -> dict:
        if snapshot.instance_id != target.pk:
            raise InvalidInput({"snapshot": ["Unknown snapshot."]})
        require_act(user, target)
        require_host_online(target, user)
        return {"snapshot": snapshot.pk, "name": snapshot.name}


class RevertSnapshot(_OnSnapshot):
    kind = "instance.snapshot_revert"

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        name = job.params["name"]
        ctx.progress(20, f"Reverting to snapshot {name}", public=True)
        domains.snapshot_revert(uri, instance.domain_name, name)
        return {"snapshot": job.params.get("snapshot"), "name": name}


class DeleteSnapshot(_OnSnapshot):
    kind = "instance.snapshot_delete"

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        name = job.params["name"]
        ctx.progress(20, f"Deleting snapshot {name}", public=True)
        try:
            domains.snapshot_delete(uri, instance.domain_name, name)
        except NotFound:
            ctx.log(f"snapshot {name} was already gone in libvirt", public=True)
        Snapshot.objects.filter(pk=job.params.get("snapshot"), instance=instance).delete()
        return {"snapshot": job.params.get("snapshot"), "name": name}


TAKE_SNAPSHOT = register(TakeSnapshot())
REVERT_SNAPSHOT = register(RevertSnapshot())
DELETE_SNAPSHOT = register(DeleteSnapshot())
