"""Instance page part: the Migrate card (admins) and its form post. The job's progress
shows in the page's current-job card, pushed live."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from cloudpanel.pages import attempt
from cloudpanel.projects import access
from hosts.models import Host

from . import placement, selectors
from .models import Instance
from .operations.migrate import LIVE_MIGRATE, LIVE_STATES


@login_required
@require_POST
def instance_migrate(request, pk: int):
    instance = get_object_or_404(selectors.instance_detail_for(request.user), pk=pk)
    if not access.is_admin(request.user):
        messages.error(request, "Only administrators may migrate instances.")
        return redirect("instances:detail", pk)
    host = None
    host_id = request.POST.get("host", "")
    if host_id:
        host = Host.objects.filter(pk=int(host_id) if host_id.isdigit() else 0).first()
        if host is None:
            messages.error(request, "Choose a host from the list.")
            return redirect("instances:detail", pk)
    bandwidth = request.POST.get("bandwidth_mib", "").strip() or None
    if instance.state == Instance.State.SHUTOFF:
        from .api.migration import _cold_migrate

        cold = _cold_migrate()
        if cold is None:
            messages.error(request, "Cold migration is not available; start the instance.")
        else:
            attempt(request, cold.start, "Cold migration requested.", user=request.user,
                    target=instance, host=host)  # fmt: skip
        return redirect("instances:detail", pk)
    attempt(
        request,
        LIVE_MIGRATE.start,
        "Live migration requested.",
        user=request.user,
        target=instance,
        host=host,
        auto_converge=request.POST.get("auto_converge") == "on",
        post_copy=request.POST.get("post_copy") == "on",
        bandwidth_mib=bandwidth,
    )
    return redirect("instances:detail", pk)


urlpatterns: list = [
    path("<int:pk>/migrate/", instance_migrate, name="migrate"),
]


def detail_context(request, instance) -> dict:
    """What templates/instances/_migration.html needs on the instance page."""
    if not access.is_admin(request.user) or instance.host is None:
        return {"migration": None}
    live = instance.state in LIVE_STATES
    movable = live or instance.state == Instance.State.SHUTOFF
    choices = placement.compatible_hosts(instance, live=live) if movable else []
    return {
        "migration": {
            "live": live,
            "movable": movable and instance.current_job_id is None,
            "hosts": [{"host": h, "problem": p} for h, p in choices],
            "compatible": sum(1 for _, p in choices if p is None),
        }
    }
