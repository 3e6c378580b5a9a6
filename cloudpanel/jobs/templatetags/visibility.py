"""What a page shows of jobs and instances to its viewer: `{{ job|step_for:user }}`.

The rules live in cloudpanel.projects.access, shared with the API and the sockets.
"""

from django import template

from cloudpanel.projects import access

register = template.Library()


@register.filter
def step_for(job, user) -> str:
    return access.job_step_for(user, job) if job else ""


@register.filter
def log_for(job, user) -> str:
    return access.job_log_for(user, job) if job else ""


@register.filter
def error_for(job, user) -> str:
    return access.job_error_for(user, job) if job else ""


@register.filter
def worker_for(job, user) -> str:
    return access.job_worker_for(user, job) if job else ""


@register.filter
def reason_for(instance, user) -> str:
    return access.instance_reason_for(user, instance) if instance else ""


@register.filter
def host_key(instance) -> str:
    return access.host_key(instance.host_id, instance.project_id) if instance else ""


@register.filter
def sees_infrastructure(user) -> bool:
    return access.sees_infrastructure(user)
