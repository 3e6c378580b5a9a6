"""Instance page parts (H5): the Backups card on the detail page and its form posts."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from cloudpanel.pages import attempt
from cloudpanel.projects import access

from . import selectors
from .backups import backup_delete, backup_list
from .operations.backup import BACKUP, CAPTURE, RESTORE


def _instance(request, pk: int):
    return get_object_or_404(selectors.instance_detail_for(request.user), pk=pk)


def _backup(request, instance, bid: int):
    return get_object_or_404(backup_list(user=request.user, instance=instance), pk=bid)


@login_required
@require_POST
def backup_create(request, pk: int):
    instance = _instance(request, pk)
    attempt(
        request,
        BACKUP.start,
        "Backup started.",
        user=request.user,
        target=instance,
        name=request.POST.get("name", ""),
    )
    return redirect("instances:detail", pk)


@login_required
@require_POST
def backup_restore(request, pk: int, bid: int):
    instance = _instance(request, pk)
    backup = _backup(request, instance, bid)
    name = request.POST.get("name", "").strip()
    if not name:
        messages.error(request, "The restored instance needs a name.")
        return redirect("instances:detail", pk)
    job = attempt(
        request,
        RESTORE.start,
        f"Restoring the backup as instance {name}.",
        user=request.user,
        target=backup,
        name=name,
    )
    if job is not None:
        return redirect("instances:detail", job.params["instance"])
    return redirect("instances:detail", pk)


@login_required
@require_POST
def backup_remove(request, pk: int, bid: int):
    instance = _instance(request, pk)
    backup = _backup(request, instance, bid)
    attempt(request, backup_delete, "Backup deleted.", user=request.user, backup=backup)
    return redirect("instances:detail", pk)


@login_required
@require_POST
def capture(request, pk: int):
    instance = _instance(request, pk)
    name = request.POST.get("name", "").strip()
    if not name:
        messages.error(request, "The image needs a name.")
        return redirect("instances:detail", pk)
    attempt(
        request,
        CAPTURE.start,
        f"Capturing the instance as image {name}.",
        user=request.user,
        target=instance,
        name=name,
    )
    return redirect("instances:detail", pk)


urlpatterns: list = [
    path("<int:pk>/backups/", backup_create, name="backup-create"),
    path("<int:pk>/backups/<int:bid>/restore/", backup_restore, name="backup-restore"),
    path("<int:pk>/backups/<int:bid>/delete/", backup_remove, name="backup-delete"),
    path("<int:pk>/capture/", capture, name="capture"),
]


def detail_context(request, instance) -> dict:
    """What templates/instances/_backup.html needs on the instance page."""
    return {
        "backups": list(backup_list(user=request.user, instance=instance)),
        "backup_can_act": access.can_act(request.user, instance.project),
    }
