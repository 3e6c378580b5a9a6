"""What a status socket starts from (and resyncs to): everything the user may see, now.

A selector: the rows come through the usual selectors (so through the one access layer), as
few columns as the socket's views need and a fixed number of queries however many rows:
an admin's snapshot of thousands of instances is still five queries and one Redis round trip
per kind of metric.
"""

from __future__ import annotations

from cloudpanel.jobs.events import job_to_event
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.selectors import job_list_for
from cloudpanel.projects import access
from hosts.events import host_to_event
from hosts.models import Host
from instances.events import instance_to_event
from instances.selectors import instance_list_for

from . import metrics

# The columns instance_to_event, job_to_event and host_to_event read, and no others.
INSTANCE_FIELDS = ("id", "uuid", "name", "state", "state_reason", "project", "current_job", "host")
JOB_FIELDS = (
    "id", "kind", "status", "progress", "step", "public_step", "error", "public_error",
    "target_type", "target_id", "target_name", "project",
)  # fmt: skip
HOST_FIELDS = ("id", "name", "status", "last_error", "last_seen_at")


def status_snapshot(user) -> dict:
    """{"instances", "jobs", "hosts", "metrics"} as the status socket sends them: the admin's
    views for admins, the tenant's otherwise; hosts and their metrics for admins only."""
    admin = access.is_admin(user)
    public = not admin
    # select_related(None): only() may not defer a row the selector joins for its own use.
    instances = list(
        instance_list_for(user).select_related(None).only(*INSTANCE_FIELDS).order_by("id")
    )
    jobs = list(
        job_list_for(user)
        .select_related(None)
        .filter(status__in=Job.ACTIVE)
        .only(*JOB_FIELDS)
        .order_by("created_at", "id")
    )
    hosts = list(Host.objects.only(*HOST_FIELDS).order_by("name")) if admin else []
    instance_ids = [instance.pk for instance in instances]
    return {
        "instances": [instance_to_event(instance, public=public) for instance in instances],
        "jobs": [job_to_event(job, public=public) for job in jobs],
        "hosts": [host_to_event(host) for host in hosts],
        "metrics": {
            "instances": metrics.latest(metrics.INSTANCE, instance_ids),
            "hosts": metrics.latest(metrics.HOST, [host.pk for host in hosts]),
        },
    }
