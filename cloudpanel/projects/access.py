"""Who may see and do what: the one place the UI, the API and the websockets ask.

Admins (staff) see and manage everything. Other users see the objects of the projects they
are members of; 'viewer' members may look but not act. Objects of other projects are
reported as not found, so their existence does not leak.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.utils.crypto import salted_hmac

from .models import Membership, Project


def token_of(user):
    """The personal API token the request came with (cloudpanel.accounts sets it on the
    user), or None for sessions. A token may narrow what its user can do, never widen it."""
    return getattr(user, "api_token", None)


def _scope(user) -> int | None:
    token = token_of(user)
    return token.project_id if token is not None else None


def _read_only(user) -> bool:
    token = token_of(user)
    return bool(token is not None and token.read_only)


def is_admin(user) -> bool:
    # A project-scoped token is never an admin's: it reaches that project only.
    return bool(user and user.is_authenticated and user.is_staff and _scope(user) is None)


def visible_project_ids(user) -> list[int] | None:
    """Project ids the user may see; None means all (admin)."""
    if is_admin(user):
        return None
    if not user or not user.is_authenticated:
        return []
    scope = _scope(user)
    if scope is not None:
        allowed = user.is_staff or Membership.objects.filter(user=user, project_id=scope).exists()
        return [scope] if allowed else []
    return list(Membership.objects.filter(user=user).values_list("project_id", flat=True))


def scope_to_user(queryset: QuerySet, user, project_field: str = "project") -> QuerySet:
    """Limit a queryset of project-owned rows to what the user may see."""
    ids = visible_project_ids(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{project_field}_id__in": ids})


def can_view(user, project: Project | None) -> bool:
    if is_admin(user):
        return True
    if project is None or not user.is_authenticated:
        return False
    return project.pk in visible_project_ids(user)


ACTING_ROLES = (Membership.Role.MANAGER, Membership.Role.MEMBER)


def can_act(user, project: Project | None) -> bool:
    """May the user change things in this project (start, stop, delete...)?"""
    if _read_only(user):
        return False
    if is_admin(user):
        return True
    if project is None or not user.is_authenticated:
        return False
    if not can_view(user, project):
        return False
    if user.is_staff:  # an admin's token scoped to this project
        return True
    return Membership.objects.filter(user=user, project=project, role__in=ACTING_ROLES).exists()


def can_manage(user, project: Project | None) -> bool:
    """May the user manage the project's members (a project manager, or an admin)?"""
    if not can_act(user, project):
        return False
    if is_admin(user) or user.is_staff:
        return True
    return Membership.objects.filter(
        user=user, project=project, role=Membership.Role.MANAGER
    ).exists()


def can_manage_members(user, project: Project | None) -> bool:
    """Adding, changing and removing members: the project's managers and admins."""
    return can_manage(user, project)


def can_view_quota(user, project: Project | None) -> bool:
    """Every member (viewers too) reads the project's quota and usage."""
    return can_view(user, project)


def can_set_quota(user) -> bool:
    """Quotas are set by admins only (a manager must not raise their own limits)."""
    return is_admin(user) and not _read_only(user)


def can_administer(user) -> bool:
    """Projects and users themselves (create, update, delete): admins, not read-only."""
    return is_admin(user) and not _read_only(user)


def may_remove_last_manager(user) -> bool:
    """Only an admin may leave a project without a manager (the admin still manages it)."""
    return is_admin(user)


def can_cancel_job(user, job) -> bool:
    """Who may cancel a job: whoever may act in its project, and whoever asked for it."""
    if not (user and user.is_authenticated):
        return False
    return can_act(user, job.project) or job.requested_by_id == user.id


# What tenants see of the infrastructure.
#
# Host names, URIs, pool and volume paths, libvirt domain names, workers and the host-level
# lines of job logs are for admins only (as OpenStack shows hypervisor details to admins
# only). Tenants get an opaque host key instead, and the tenant-safe text that job handlers
# mark public; everything not marked public is admin-only.

HOST_CHOICE_REFUSED = "Only administrators can choose a host."
GENERIC_JOB_FAILURE = "The job failed on the host; an administrator can see the details."
GENERIC_INSTANCE_REASON = {
    "error": "The last operation on this instance failed; an administrator can see the details.",
    "missing": "The virtual machine is no longer found on its host; an administrator can see "
    "the details.",
    "host-down": "The server this instance runs on is unreachable; an administrator can "
    "rebuild it elsewhere from its newest copy.",
}
# Job params and results a tenant may see: its own inputs and outcomes, nothing of the host.
PUBLIC_JOB_KEYS = frozenset(
    {
        "name",
        "description",
        "force_after",
        "flavor",
        "snapshot",
        "state",
        "forced",
        "quiesce",
        "quiesced",
        "backup",
        "method",
        "size_bytes",
        "instance",
        "agent",
        "from",
        "to",
        "disk_grown",
        "memory_bytes",
        "image",
        "sha256",
        "file_size",
        "copied",
    }
)


def sees_infrastructure(user) -> bool:
    return is_admin(user)


def require_host_choice_allowed(user, host_id) -> None:
    """Refuse any host id from a non-admin before looking it up, so that an unknown host
    and a real one get the same answer (nothing to probe)."""
    if host_id is not None and not is_admin(user):
        raise PermissionDenied(HOST_CHOICE_REFUSED)


def host_key(host_id: int | None, project_id: int | None) -> str:
    """Opaque and stable: equal for two instances of a project on the same host, different
    across projects (like OpenStack's hostId), and no way back to the host."""
    if host_id is None:
        return ""
    return salted_hmac("cloudpanel.host-key", f"{project_id}:{host_id}").hexdigest()[:28]


def public_instance_reason(instance) -> str:
    """Why an instance is in its state, as tenants read it (nothing of the host)."""
    if not instance.state_reason:
        return ""
    return GENERIC_INSTANCE_REASON.get(instance.state, "")


def instance_reason_for(user, instance) -> str:
    if is_admin(user):
        return instance.state_reason
    return public_instance_reason(instance)


def job_step_for(user, job) -> str:
    return job.step if is_admin(user) else job.public_step


def job_log_for(user, job) -> str:
    return job.log if is_admin(user) else job.public_log


def public_job_error(job) -> str:
    """A job's error as tenants read it: its public text, else a generic message."""
    return job.public_error or (GENERIC_JOB_FAILURE if job.error else "")


def job_error_for(user, job) -> str:
    return job.error if is_admin(user) else public_job_error(job)


def job_worker_for(user, job) -> str:
    return job.worker if is_admin(user) else ""


def public_job_data(data: dict | None) -> dict:
    return {k: v for k, v in (data or {}).items() if k in PUBLIC_JOB_KEYS}


def job_params_for(user, job) -> dict:
    return job.params if is_admin(user) else public_job_data(job.params)


def job_result_for(user, job) -> dict:
    return job.result if is_admin(user) else public_job_data(job.result)


def job_event_visible(visible_projects: list[int] | set[int] | None, project_id) -> bool:
    """May a socket whose user sees `visible_projects` (None: all, admin) get this job's
    events? Jobs of no project (host jobs) are for admins only."""
    if visible_projects is None:
        return True
    return project_id is not None and project_id in visible_projects
