"""The portal's pages: a tenant's projects, their instances, snapshots, backups and jobs.

Thin over the operations and services the console uses; who may see and do what is the
access layer's answer (viewers see, members and managers act), and another project's
instance is a 404 like in the console and the API.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from cloudpanel.errors import PAGE_ERRORS, page_message
from cloudpanel.forms import add_service_errors
from cloudpanel.jobs.selectors import job_list_for
from cloudpanel.pages import attempt
from cloudpanel.projects import access
from cloudpanel.projects.models import Membership, Project, Quota
from cloudpanel.projects.quotas import quota_usage
from instances import operations, selectors
from instances.backups import backup_delete, backup_list
from instances.models import Snapshot
from instances.operations.backup import BACKUP, RESTORE

from .forms import NameForm, PortalCreateForm

SESSION_PROJECT = "portal_project"
RECENT_JOBS = 15
# The power actions the portal offers, in this order, with the button's words.
POWER_LABELS = {
    "start": "Start",
    "shutdown": "Shut down",
    "reboot": "Reboot",
    "stop": "Force off",
    "resume": "Resume",
}
RESOURCE_LABELS = {
    "instances": ("Instances", ""),
    "vcpus": ("vCPUs", ""),
    "ram_mib": ("RAM", "MiB"),
    "disk_gib": ("Disk", "GiB"),
    "snapshots": ("Snapshots", ""),
    "backups": ("Backups", ""),
}
NO_ACTING = "Your role in this project only lets you look."


# ---- the current project -------------------------------------------------------------


def _projects(user) -> list[Project]:
    ids = access.visible_project_ids(user)
    projects = Project.objects.order_by("name")
    return list(projects if ids is None else projects.filter(id__in=ids))


def _roles(user) -> dict[int, str]:
    rows = Membership.objects.filter(user=user)
    return {m.project_id: m.get_role_display() for m in rows}


def _current(request) -> tuple[Project | None, list[Project]]:
    projects = _projects(request.user)
    chosen = request.session.get(SESSION_PROJECT)
    for project in projects:
        if project.pk == chosen:
            return project, projects
    return (projects[0] if projects else None), projects


def _remember(request, project: Project) -> None:
    if request.session.get(SESSION_PROJECT) != project.pk:
        request.session[SESSION_PROJECT] = project.pk


def usage_rows(project: Project) -> list[dict]:
    """quota_usage(project) as rows to draw: label, used, limit, percent, full."""
    rows = []
    usage = quota_usage(project) or {}
    for resource in Quota.RESOURCES:
        entry = usage.get(resource)
        if entry is None:
            continue
        used, limit = entry.get("used") or 0, entry.get("limit")
        label, unit = RESOURCE_LABELS.get(resource, (resource, ""))
        percent = min(100, round(100 * used / limit)) if limit else (100 if limit == 0 else 0)
        rows.append(
            {
                "resource": resource,
                "label": label,
                "unit": unit,
                "used": used,
                "limit": limit,
                "percent": percent,
                "full": limit is not None and used >= limit,
            }
        )
    return rows


def _page_context(request, project, projects) -> dict:
    roles = _roles(request.user)
    return {
        "project": project,
        "projects": [(p, roles.get(p.pk, "Administrator")) for p in projects],
        "role": roles.get(project.pk, "Administrator") if project else "",
        "can_act": bool(project) and access.can_act(request.user, project),
        "usage": usage_rows(project) if project else [],
    }


# ---- pages ---------------------------------------------------------------------------


@login_required
def overview(request):
    project, projects = _current(request)
    context = _page_context(request, project, projects)
    if project is not None:
        instances = (
            selectors.instance_detail_for(request.user)
            .filter(project=project)
            .order_by("name", "id")
        )
        jobs = job_list_for(request.user).filter(project=project).order_by("-created_at")
        context.update(instances=list(instances), jobs=list(jobs[:RECENT_JOBS]))
    return render(request, "portal/overview.html", context)


@login_required
@require_POST
def switch_project(request):
    try:
        wanted = int(request.POST.get("project", ""))
    except ValueError:
        raise Http404("no such project") from None
    project = next((p for p in _projects(request.user) if p.pk == wanted), None)
    if project is None:
        raise Http404("no such project")
    _remember(request, project)
    return redirect("portal")


@login_required
def instance_create(request):
    project, projects = _current(request)
    if project is None:
        return redirect("portal")
    can_act = access.can_act(request.user, project)
    if request.method == "POST" and not can_act:
        raise PermissionDenied(NO_ACTING)
    form = PortalCreateForm(request.POST or None, user=request.user, project=project)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = operations.CREATE.start(
                user=request.user,
                name=data["name"],
                image=data["image"],
                flavor=data["flavor"],
                project=project,
                keypairs=[k.pk for k in data.get("keypairs") or []],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except PAGE_ERRORS as exc:  # over quota, no capacity...: the message says which
            form.add_error(None, page_message(exc))
        else:
            messages.success(request, f"Creating {job.target_name}.")
            return redirect("portal-instance", job.target_id)
    context = _page_context(request, project, projects)
    context["form"] = form
    status = 400 if request.method == "POST" else 200
    return render(request, "portal/create.html", context, status=status)


def _instance(request, pk: int):
    return get_object_or_404(selectors.instance_detail_for(request.user), pk=pk)


def _acting_instance(request, pk: int):
    """The instance, for a change: 404 outside the user's projects, 403 for a viewer."""
    instance = _instance(request, pk)
    if not access.can_act(request.user, instance.project):
        raise PermissionDenied(NO_ACTING)
    return instance


@login_required
def instance_detail(request, pk: int):
    instance = _instance(request, pk)
    _remember(request, instance.project)
    project, projects = _current(request)
    context = _page_context(request, project, projects)
    context.update(
        instance=instance,
        powers=[
            (action, label)
            for action, label in POWER_LABELS.items()
            if action in operations.POWER and operations.POWER[action].offered_for(instance)
        ],
        console_ready=instance.state in ("running", "paused"),
        snapshots=list(instance.snapshots.all()),
        backups=list(backup_list(user=request.user, instance=instance)),
        jobs=list(selectors.instance_job_list(instance)[:RECENT_JOBS]),
    )
    return render(request, "portal/instance.html", context)


def _back(pk: int):
    return redirect("portal-instance", pk)


@login_required
@require_POST
def instance_power(request, pk: int, action: str):
    if action not in POWER_LABELS or action not in operations.POWER:
        raise Http404("unknown action")
    instance = _acting_instance(request, pk)
    params = {"force_after": 60} if action == "shutdown" else {}
    attempt(
        request,
        operations.POWER[action].start,
        f"{POWER_LABELS[action]}: requested.",
        user=request.user,
        target=instance,
        **params,
    )
    return _back(pk)


@login_required
@require_POST
def instance_delete(request, pk: int):
    instance = _acting_instance(request, pk)
    done = attempt(
        request,
        operations.DELETE.start,
        f"Deleting {instance.name}.",
        user=request.user,
        target=instance,
    )
    return redirect("portal") if done else _back(pk)


@login_required
@require_POST
def snapshot_create(request, pk: int):
    instance = _acting_instance(request, pk)
    form = NameForm(request.POST)
    if form.is_valid() and form.cleaned_data["name"].strip():
        attempt(
            request,
            operations.TAKE_SNAPSHOT.start,
            "Snapshot requested.",
            user=request.user,
            target=instance,
            name=form.cleaned_data["name"].strip(),
            description=form.cleaned_data.get("description", ""),
        )
    else:
        messages.error(request, "A snapshot needs a name.")
    return _back(pk)


SNAPSHOT_VERBS = {
    "revert": (operations.REVERT_SNAPSHOT, "Reverting to {}."),
    "delete": (operations.DELETE_SNAPSHOT, "Deleting snapshot {}."),
}


@login_required
@require_POST
def snapshot_change(request, pk: int, sid: int, verb: str):
    if verb not in SNAPSHOT_VERBS:
        raise Http404("unknown action")
    instance = _acting_instance(request, pk)
    snapshot = get_object_or_404(Snapshot, pk=sid, instance=instance)
    operation, success = SNAPSHOT_VERBS[verb]
    attempt(
        request,
        operation.start,
        success.format(snapshot.name),
        user=request.user,
        target=instance,
        snapshot=snapshot,
    )
    return _back(pk)


@login_required
@require_POST
def backup_create(request, pk: int):
    instance = _acting_instance(request, pk)
    name = request.POST.get("name", "").strip()
    attempt(request, BACKUP.start, "Backup started.", user=request.user, target=instance, name=name)
    return _back(pk)


def _backup(request, instance, bid: int):
    return get_object_or_404(backup_list(user=request.user, instance=instance), pk=bid)


@login_required
@require_POST
def backup_restore(request, pk: int, bid: int):
    instance = _acting_instance(request, pk)
    backup = _backup(request, instance, bid)
    name = request.POST.get("name", "").strip()
    if not name:
        messages.error(request, "The restored instance needs a name.")
        return _back(pk)
    job = attempt(
        request,
        RESTORE.start,
        f"Restoring the backup as {name}.",
        user=request.user,
        target=backup,
        name=name,
    )
    return _back(job.params["instance"] if job is not None else pk)


@login_required
@require_POST
def backup_remove(request, pk: int, bid: int):
    instance = _acting_instance(request, pk)
    backup = _backup(request, instance, bid)
    attempt(request, backup_delete, "Backup deleted.", user=request.user, backup=backup)
    return _back(pk)
