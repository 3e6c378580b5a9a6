from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from cloudpanel.errors import PAGE_ERRORS, page_message
from cloudpanel.forms import add_service_errors
from cloudpanel.jobs.models import Job
from cloudpanel.pages import attempt, staff_required

from . import continuity_views, services
from .forms import HostForm
from .models import Host
from .selectors import host_capacity, host_list_with_allocation

staff_only = staff_required
HEALTH_EVENTS = 20


@staff_only
def host_list(request):
    hosts = list(host_list_with_allocation().order_by("name"))
    rows = [(host, host_capacity(host)) for host in hosts]
    return render(request, "hosts/list.html", {"rows": rows})


@staff_only
def host_detail(request, pk: int):
    host = get_object_or_404(host_list_with_allocation(), pk=pk)
    context = {
        "host": host,
        "capacity": host_capacity(host),
        "caps": host.capabilities or {},
        "events": list(host.events.all()[:HEALTH_EVENTS]),
        "jobs": list(Job.objects.filter(target_type=Job.TargetType.HOST, target_id=host.pk)[:10]),
    }
    context.update(continuity_views.detail_context(request, host))
    return render(request, "hosts/detail.html", context)


@staff_only
def host_new(request):
    form = HostForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            host = services.host_create(**form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        except PAGE_ERRORS as exc:
            form.add_error(None, page_message(exc))
        else:
            if host.status == Host.Status.ONLINE:
                messages.success(request, f"Host {host.name} added and synced.")
            else:
                messages.warning(
                    request,
                    f"Host {host.name} was saved but could not be reached: {host.last_error}",
                )
            return redirect("hosts:detail", pk=host.pk)
    return render(request, "hosts/form.html", {"form": form})


@staff_only
@require_POST
def host_refresh(request, pk: int):
    host = services.host_sync(host=get_object_or_404(Host, pk=pk))
    if host.status == Host.Status.ONLINE:
        messages.success(request, f"Host {host.name} synced from libvirt.")
    else:
        messages.error(request, f"Could not sync {host.name}: {host.last_error}")
    return redirect("hosts:detail", pk=host.pk)


@staff_only
@require_POST
def host_delete(request, pk: int):
    host = get_object_or_404(Host, pk=pk)
    attempt(request, services.host_delete, f"Host {host.name} removed.", host=host)
    if Host.objects.filter(pk=pk).exists():  # refused: the message says why
        return redirect("hosts:detail", pk=pk)
    return redirect("hosts:list")
