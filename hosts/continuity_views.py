"""Host page parts: maintenance and evacuation."""

from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from cloudpanel.jobs.models import Job
from cloudpanel.pages import attempt, staff_required

from . import services
from .models import Host
from .operations import EVACUATE

staff_only = staff_required


@staff_only
@require_POST
def host_maintenance(request, pk: int):
    host = get_object_or_404(Host, pk=pk)
    maintenance = request.POST.get("maintenance") in ("1", "true", "on")
    attempt(
        request,
        services.host_set_maintenance,
        f"Host {host.name} is {'in' if maintenance else 'out of'} maintenance.",
        host=host,
        maintenance=maintenance,
    )
    return redirect("hosts:detail", pk=pk)


@staff_only
@require_POST
def host_evacuate(request, pk: int):
    host = get_object_or_404(Host, pk=pk)
    attempt(
        request,
        EVACUATE.start,
        f"Evacuating host {host.name}: it goes into maintenance and its instances move.",
        user=request.user,
        target=host,
        include_shutoff=request.POST.get("include_shutoff") in ("1", "true", "on"),
    )
    return redirect("hosts:detail", pk=pk)


urlpatterns = [
    path("<int:pk>/maintenance/", host_maintenance, name="maintenance"),
    path("<int:pk>/evacuate/", host_evacuate, name="evacuate"),
]


def detail_context(request, host) -> dict:
    """What templates/hosts/_continuity.html needs on the host page."""
    evacuation = (
        Job.objects.filter(kind=EVACUATE.kind, target_type=Job.TargetType.HOST, target_id=host.pk)
        .order_by("-created_at", "-id")
        .first()
    )
    outcome = []
    if evacuation is not None:
        result = evacuation.result or {}
        outcome = result.get("instances") or [
            {**row, "status": "stayed" if row.get("action") == "stay" else "planned"}
            for row in result.get("planned", [])
        ]
    return {
        "evacuation": evacuation,
        "evacuation_outcome": outcome,
        "leftover_domains": [d for d in host.unmanaged_domains or [] if d.get("leftover_of")],
    }
