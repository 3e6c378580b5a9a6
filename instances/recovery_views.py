"""Instance page part: rebuilding a host-down instance (admins only)."""

from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from cloudpanel.pages import attempt, staff_required
from cloudpanel.projects import access
from hosts.models import Host

from . import hostdown, selectors
from .models import Instance
from .operations.rebuild import REBUILD, SOURCES


@staff_required
@require_POST
def instance_rebuild(request, pk: int):
    instance = get_object_or_404(selectors.instance_detail_for(request.user), pk=pk)
    source = request.POST.get("source") or None
    source_id = request.POST.get("source_id") or None
    host_id = request.POST.get("host") or None
    host = Host.objects.filter(pk=host_id).first() if str(host_id or "").isdigit() else None
    attempt(
        request,
        REBUILD.start,
        f"Rebuilding instance {instance.name}.",
        user=request.user,
        target=instance,
        source=source if source in SOURCES else None,
        source_id=source_id,
        host=host,
    )
    return redirect("instances:detail", pk)


@staff_required
@require_POST
def leftover_remove(request):
    """Remove a leftover domain listed on a host's page (its instance lives elsewhere now)."""
    host = get_object_or_404(Host, pk=request.POST.get("host") or 0)
    domain = request.POST.get("domain", "")
    attempt(
        request,
        hostdown.leftover_remove,
        f"Leftover domain {domain} removed from {host.name}.",
        host=host,
        domain_name=domain,
    )
    return redirect("hosts:detail", pk=host.pk)


urlpatterns = [
    path("<int:pk>/rebuild/", instance_rebuild, name="rebuild"),
    path("leftovers/remove/", leftover_remove, name="leftover-remove"),
]


def detail_context(request, instance) -> dict:
    """What templates/instances/_recovery.html needs on the instance page."""
    if not access.is_admin(request.user) or instance.state != Instance.State.HOST_DOWN:
        return {"recovery": None}
    return {"recovery": hostdown.recovery_overview(instance)}
