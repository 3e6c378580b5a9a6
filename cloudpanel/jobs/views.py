from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from cloudpanel.projects.access import can_cancel_job

from .filters import JobFilter
from .models import Job
from .selectors import job_list_for

PAGE = 200


@login_required
def job_list(request):
    visible = job_list_for(request.user)
    filterset = JobFilter(request.GET, queryset=visible)
    jobs = list(filterset.qs[: PAGE + 1])
    context = {
        "filter": filterset,
        "jobs": jobs[:PAGE],
        "truncated": len(jobs) > PAGE,
        "statuses": Job.Status.choices,
        "kinds": sorted(set(visible.order_by().values_list("kind", flat=True).distinct())),
        "selected_statuses": request.GET.getlist("status"),
        "selected_kind": request.GET.get("kind", ""),
        "filtered": bool(request.GET.get("status") or request.GET.get("kind")),
    }
    return render(request, "jobs/list.html", context)


@login_required
def job_detail(request, pk: int):
    visible = job_list_for(request.user)
    job = get_object_or_404(visible, pk=pk)
    context = {
        "job": job,
        # The cancel endpoint's own rule, so the button only shows where it would work.
        "may_cancel": can_cancel_job(request.user, job),
        "parent": visible.filter(pk=job.parent_id).first() if job.parent_id else None,
        "children": list(visible.filter(parent=job).order_by("id")),
    }
    return render(request, "jobs/detail.html", context)
