from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.views import defaults

from cloudpanel.jobs.selectors import job_list_for
from cloudpanel.projects.access import is_admin
from cloudpanel.projects.models import Membership
from hosts.models import Host
from hosts.selectors import host_capacity, host_list_with_allocation, host_totals

RECENT_JOBS = 10


@login_required
def overview(request):
    context = {
        "recent_jobs": list(job_list_for(request.user)[:RECENT_JOBS]),
        "is_admin": is_admin(request.user),
    }
    if context["is_admin"]:
        # Host data is for admins only; members see their projects' jobs.
        hosts = list(host_list_with_allocation().order_by("name"))
        counts = {status: 0 for status in Host.Status.values}
        for host in hosts:
            counts[host.status] = counts.get(host.status, 0) + 1
        context.update(
            host_rows=[(host, host_capacity(host)) for host in hosts],
            host_counts=[(s, label, counts[s]) for s, label in Host.Status.choices],
            hosts_total=len(hosts),
            kvm_hosts=sum(1 for host in hosts if host.kvm),
            tcg_hosts=sum(1 for host in hosts if host.capabilities and not host.kvm),
            totals=host_totals(hosts),
            instances_total=sum(getattr(h, "instance_count", 0) or 0 for h in hosts),
        )
    else:
        context["memberships"] = _memberships(request.user)
    return render(request, "overview.html", context)


@login_required
def portal(request):
    return render(request, "portal.html", {"memberships": _memberships(request.user)})


def _memberships(user):
    return list(
        Membership.objects.filter(user=user).select_related("project").order_by("project__name")
    )


# ---- error pages: JSON under /api/, the layout elsewhere, never debug information ----------


def _is_api(request) -> bool:
    return request.path_info.startswith("/api/")


def bad_request(request, exception):
    if _is_api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _is_api(request):
        detail = "You do not have permission to perform this action."
        return JsonResponse({"detail": detail}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _is_api(request):
        return JsonResponse({"detail": _api_not_found_detail(request.path_info)}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return JsonResponse({"detail": "Internal server error"}, status=500)
    return defaults.server_error(request)


def _api_not_found_detail(path: str) -> str:
    if not path.endswith("/"):
        try:
            resolve(path + "/")
        except Resolver404:
            pass
        else:
            return f"Not found. API paths end with a slash: {path}/"
    return "Not found."


def csrf_failure(request, reason=""):
    """A refused form post (stale page, cookies off, foreign origin), in the layout; Django's
    own page would suggest turning DEBUG on."""
    if _is_api(request):
        detail = "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken."
        return JsonResponse({"detail": detail}, status=403)
    return render(request, "403_csrf.html", status=403)
