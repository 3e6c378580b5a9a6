"""Instances as live events on the status stream (cloudpanel.live.publisher)."""

from __future__ import annotations

from cloudpanel.live.publisher import groups_for, publish
from cloudpanel.projects import access

from .models import Instance


def instance_to_event(instance: Instance, *, public: bool = False) -> dict:
    """The instance as the status stream shows it: the admin's view, or with `public` the
    tenant's (an opaque host key instead of the host, the tenant-safe reason)."""
    event = {
        "id": instance.pk,
        "uuid": str(instance.uuid),
        "name": instance.name,
        "state": instance.state,
        "state_display": instance.get_state_display(),
        "project": instance.project_id,
        "current_job": instance.current_job_id,
    }
    if public:
        event["state_reason"] = access.public_instance_reason(instance)
        event["host_key"] = access.host_key(instance.host_id, instance.project_id)
    else:
        event["state_reason"] = instance.state_reason
        event["host"] = instance.host_id
    return event


def instance_message(instance: Instance) -> dict:
    return {
        "type": "status.instance",
        "instance": instance_to_event(instance),
        "public": instance_to_event(instance, public=True),
        "project": instance.project_id,
    }


def broadcast_instance(instance: Instance) -> None:
    publish(groups_for(instance.project_id), instance_message(instance))


def on_instance_changed(sender, instance: Instance, **kwargs) -> None:
    broadcast_instance(instance)
