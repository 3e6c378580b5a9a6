from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render, resolve_url
from django.urls import Resolver404, resolve
from django.views import defaults

from cloudpanel.api import error_body
from cloudpanel.jobs.selectors import job_list_for
from cloudpanel.projects.access import is_admin
from cloudpanel.projects.models import Membership
from hosts.models import Host
from hosts.selectors import host_capacity, host_list_with_allocation, host_totals

RECENT_JOBS = 10
# Set when a tenant signs in on the login page without a `next` page to go to: the login
# view then sends them to the overview (LOGIN_REDIRECT_URL), which sends them on to the portal.
class LoginView(auth_views.LoginView):
    """Django's sign-in, landing a tenant in the portal and an admin in the console. A safe
    `next` still wins, unless it is the overview itself, where signing in from the site's
    root comes back to."""

    def get_success_url(self):
        wanted = self.get_redirect_url()
        if is_admin(self.request.user):
            return wanted or resolve_url(settings.LOGIN_REDIRECT_URL)
        if wanted and wanted != resolve_url(settings.LOGIN_REDIRECT_URL):
            return wanted
        return resolve_url("portal")


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


def _memberships(user):
    return list(
        Membership.objects.filter(user=user).select_related("project").order_by("project__name")
    )


# ---- error pages: JSON under /api/, the layout elsewhere, never debug information ----------


def _is_api(request) -> bool:
    return request.path_info.startswith("/api/")


def bad_request(request, exception):
    if _is_api(request):
        return JsonResponse(error_body("Bad request.", "bad_request"), status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _is_api(request):
        detail = "You do not have permission to perform this action."
        return JsonResponse(error_body(detail, "permission_denied"), status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _is_api(request):
        detail = _api_not_found_detail(request.path_info)
        return JsonResponse(error_body(detail, "not_found"), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return JsonResponse(error_body("Internal server error", "server_error"), status=500)
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
        return JsonResponse(error_body(detail, "csrf_failed"), status=403)
    return render(request, "403_csrf.html", status=403)
