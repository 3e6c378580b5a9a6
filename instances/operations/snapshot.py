"""Snapshots: take, revert to and delete internal (qcow2) snapshots of an instance."""

from __future__ import annotations

from django.db import transaction

from cloudpanel.errors import Conflict, InvalidInput
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobContext, JobFailed
from cloudpanel.projects.quotas import quota_reserve
from cloudpanel.virt import AgentUnavailable, NotFound, agent, domains
from hosts.connection import connection_uri

from ..models import Instance, Snapshot
from ..rules import GONE, require_act, require_host_online, validate_name
from .base import InstanceOperation, uri_of

# States with no disk state worth keeping, or none at all.
_UNSNAPPABLE = (*GONE, Instance.State.BUILDING, Instance.State.ERROR)


def _require_agent_for_quiesce(instance: Instance) -> None:
    """A quiesced snapshot of a running guest needs its agent: refuse now if none answers.

    (A shut-off guest's disks are at rest already; its snapshot needs no freeze.)
    """
    uri = connection_uri(instance.host)
    if domains.domain_state(uri, instance.domain_name) != "running":
        return
    try:
        agent.agent_ping(uri, instance.domain_name)
    except AgentUnavailable as exc:
        raise Conflict(
            f"Instance {instance.name} cannot take a quiesced snapshot: {exc} "
            "Take it without quiescing, or start the guest agent in the guest."
        ) from exc


class TakeSnapshot(InstanceOperation):
    kind = "instance.snapshot_create"

    def check(
        self, *, user, target: Instance, name: str, description: str = "", quiesce: bool = False
    ) -> dict:
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
        if quiesce:
            _require_agent_for_quiesce(target)
        return {"name": name, "description": description, "quiesce": bool(quiesce)}

    def start(self, *, user, target: Instance, **params) -> Job:
        job_params = self.check(user=user, target=target, **params)
        with transaction.atomic():
            quota_reserve(target.project, snapshots=1)  # locks the project: counts in turn
            return self.create_job(user=user, target=target, params=job_params)

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        name = job.params["name"]
        quiesce = bool(job.params.get("quiesce"))
        if quiesce:
            ctx.progress(
                20, f"Taking snapshot {name} with the guest's filesystems frozen", public=True
            )
        else:
            ctx.progress(20, f"Taking snapshot {name}", public=True)
        try:
            details = domains.snapshot_create(
                uri, instance.domain_name, name, job.params.get("description", ""), quiesce=quiesce
            )
        except AgentUnavailable as exc:
            # The agent went away between the check and now.
            raise JobFailed(f"No quiesced snapshot: {exc}", public=True) from exc
        snap = Snapshot.objects.create(
            instance=instance,
            name=details.name,
            description=details.description,
            domain_state=details.state,
            created_by=job.requested_by,
        )
        return {"snapshot": snap.pk, "name": snap.name, "quiesced": quiesce}


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
        # A quiesced snapshot of a running guest holds its memory with the filesystems
        # frozen: thaw them (a no-op for any other snapshot, and for guests without agent).
        if domains.domain_state(uri, instance.domain_name) == "running":
            try:
                if agent.fs_thaw(uri, instance.domain_name):
                    ctx.log("Thawed the guest's filesystems frozen in the snapshot", public=True)
            except AgentUnavailable:
                pass
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
