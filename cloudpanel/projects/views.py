"""The admin console's project pages: the list (and a new project), and one project with
its members (add, change role, remove) and its quota with usage bars.

Staff pages; what each action may do is still the services' (and the access layer's) call.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from cloudpanel.forms import add_service_errors
from cloudpanel.pages import attempt, staff_required

from . import services
from .models import Membership, Project, Quota
from .quotas import LABELS, RESOURCES, quota_usage, quota_usage_many

staff_only = staff_required


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=63)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class MemberAddForm(forms.Form):
    user = forms.ModelChoiceField(queryset=get_user_model().objects.none())
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = (
            get_user_model()
            .objects.filter(is_active=True)
            .exclude(membership__project=project)
            .order_by("username")
        )


class QuotaForm(forms.Form):
    """Each limit; empty is unlimited."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for resource in RESOURCES:
            label, unit = LABELS[resource]
            self.fields[resource] = forms.IntegerField(
                label=f"{label[0].upper()}{label[1:]}{f' ({unit.strip()})' if unit else ''}",
                required=False,
                min_value=0,
                widget=forms.NumberInput(attrs={"placeholder": "unlimited"}),
            )


def usage_rows(usage: dict) -> list[dict]:
    """A quota_usage as bars: used against limit (no limit: no bar to fill)."""
    rows = []
    for resource, value in usage.items():
        label, unit = LABELS[resource]
        used, limit = value["used"], value["limit"]
        percent = min(100.0, 100.0 * used / limit) if limit else (100.0 if limit == 0 else 0.0)
        level = "ok"
        if limit is not None and used >= limit:
            level = "danger"
        elif limit is not None and used >= 0.8 * limit:
            level = "warn"
        rows.append({
            "resource": resource, "label": label, "unit": unit.strip(), "used": used,
            "limit": limit, "percent": f"{percent:.2f}", "level": level,
        })  # fmt: skip
    return rows


@staff_only
def project_list(request):
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(**form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return redirect("projects:detail", pk=project.pk)
    projects = Project.objects.annotate(member_count=Count("membership", distinct=True)).order_by(
        "name"
    )
    projects = list(projects)
    usage = quota_usage_many(projects)
    rows = [(project, usage_rows(usage[project.pk])) for project in projects]
    return render(request, "projects/list.html", {"rows": rows, "form": form})


@staff_only
def project_detail(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    quota = Quota.objects.filter(project=project).first()
    initial = {r: getattr(quota, r) for r in RESOURCES} if quota else {}
    context = {
        "project": project,
        "members": Membership.objects.filter(project=project)
        .select_related("user")
        .order_by("user__username"),
        "roles": Membership.Role.choices,
        "add_form": MemberAddForm(project=project),
        "quota_form": QuotaForm(initial=initial),
        "usage": usage_rows(quota_usage(project)),
        "project_form": ProjectForm(
            initial={"name": project.name, "description": project.description}
        ),  # fmt: skip
    }
    return render(request, "projects/detail.html", context)


def _back(pk: int):
    return redirect("projects:detail", pk=pk)


@staff_only
@require_POST
def project_update(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    form = ProjectForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the project a name.")
        return _back(pk)
    attempt(request, services.project_update, "Project saved.", project=project,
            **form.cleaned_data)  # fmt: skip
    return _back(pk)


@staff_only
@require_POST
def project_delete(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    attempt(request, services.project_delete, f"Project {project.name} deleted.", project=project)
    if Project.objects.filter(pk=pk).exists():
        return _back(pk)
    return redirect("projects:list")


@staff_only
@require_POST
def member_add(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    form = MemberAddForm(request.POST, project=project)
    if not form.is_valid():
        errors = "; ".join(" ".join(e) for e in form.errors.values())
        messages.error(request, f"Not added: {errors}")
        return _back(pk)
    user = form.cleaned_data["user"]
    attempt(
        request, services.member_add, f"{user.username} added as {form.cleaned_data['role']}.",
        by=request.user, project=project, user=user, role=form.cleaned_data["role"],
    )  # fmt: skip
    return _back(pk)


@staff_only
@require_POST
def member_change(request, pk: int, user_id: int):
    project = get_object_or_404(Project, pk=pk)
    membership = get_object_or_404(Membership, project=project, user_id=user_id)
    role = request.POST.get("role", "")
    attempt(
        request, services.member_change, f"{membership.user.username} is now {role}.",
        by=request.user, project=project, user=membership.user, role=role,
    )  # fmt: skip
    return _back(pk)


@staff_only
@require_POST
def member_remove(request, pk: int, user_id: int):
    project = get_object_or_404(Project, pk=pk)
    membership = get_object_or_404(Membership, project=project, user_id=user_id)
    attempt(
        request, services.member_remove, f"{membership.user.username} removed.",
        by=request.user, project=project, user=membership.user,
    )  # fmt: skip
    return _back(pk)


@staff_only
@require_POST
def quota_update(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    form = QuotaForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        messages.error(request, f"Quota not saved: {errors}")
        return _back(pk)
    attempt(request, services.quota_update, "Quota saved.", by=request.user, project=project,
            **form.cleaned_data)  # fmt: skip
    return _back(pk)
