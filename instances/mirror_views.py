"""Instance page parts (H4): the Disk mirrors card on the detail page (admins only) and its
form posts (start, pivot, stop)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from cloudpanel.pages import attempt
from cloudpanel.projects import access

from . import selectors
from .mirror_events import mirror_list
from .models import DiskMirror, Instance
from .operations.mirror import MIRROR_PIVOT, MIRROR_START, MIRROR_STOP

BADGES = {
    DiskMirror.State.COPYING: "badge-info",
    DiskMirror.State.MIRRORED: "badge-ok",
    DiskMirror.State.PIVOTED: "badge-outline",
    DiskMirror.State.STOPPED: "badge-outline",
    DiskMirror.State.FAILED: "badge-danger",
}


def _instance(request, pk: int) -> Instance:
    instance = get_object_or_404(selectors.instance_detail_for(request.user), pk=pk)
    if not access.is_admin(request.user):
        raise PermissionDenied("Only administrators may mirror disks.")
    return instance


@login_required
@require_POST
def mirror_start(request, pk: int):
    instance = _instance(request, pk)
    disk = request.POST.get("disk", "vda")
    attempt(
        request,
        MIRROR_START.start,
        f"Mirroring of {disk} started.",
        user=request.user,
        target=instance,
        disk=disk,
        pool=request.POST.get("pool", ""),
    )
    return redirect("instances:detail", pk)


def _on_mirror(request, pk: int, mid: int, operation, done: str):
    instance = _instance(request, pk)
    mirror = get_object_or_404(DiskMirror, pk=mid, instance=instance)
    attempt(request, operation.start, done, user=request.user, target=instance, mirror=mirror)
    return redirect("instances:detail", pk)


@login_required
@require_POST
def mirror_pivot(request, pk: int, mid: int):
    return _on_mirror(request, pk, mid, MIRROR_PIVOT, "Pivot to the mirror started.")


@login_required
@require_POST
def mirror_stop(request, pk: int, mid: int):
    return _on_mirror(request, pk, mid, MIRROR_STOP, "Stopping the mirror; its copy stays.")


urlpatterns: list = [
    path("<int:pk>/mirrors/", mirror_start, name="mirror-start"),
    path("<int:pk>/mirrors/<int:mid>/pivot/", mirror_pivot, name="mirror-pivot"),
    path("<int:pk>/mirrors/<int:mid>/stop/", mirror_stop, name="mirror-stop"),
]


def detail_context(request, instance) -> dict:
    """What templates/instances/_mirror.html needs on the instance page (admins only)."""
    if not access.is_admin(request.user):
        return {"mirror_card": False}
    mirrors = mirror_list(instance)
    for mirror in mirrors:
        mirror.badge = BADGES.get(mirror.state, "")
    host = instance.host
    pools = [p.get("name") for p in (host.storage_pools if host else []) if p.get("name")]
    return {
        "mirror_card": True,
        "mirrors": mirrors,
        "mirror_pools": pools,
        "mirror_can_start": instance.state == Instance.State.RUNNING,
    }
