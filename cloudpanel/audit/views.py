"""The audit page: read-only, the API's filters, export links."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_safe

from cloudpanel.projects.access import is_admin

from .filters import AuditEventFilter
from .models import AuditEvent
from .selectors import audit_events_for, present

PAGE = 200


@require_safe
@login_required
def audit_list(request):
    filterset = AuditEventFilter(request.GET, queryset=audit_events_for(request.user))
    admin = is_admin(request.user)
    rows = list(filterset.qs[: PAGE + 1]) if filterset.is_valid() else []
    query = {k: v for k, v in request.GET.items() if v and k in AuditEventFilter.base_filters}
    context = {
        "filter": filterset,
        "events": [present(row, request.user, admin=admin) for row in rows[:PAGE]],
        "truncated": len(rows) > PAGE,
        "results": AuditEvent.Result.choices,
        "sources": AuditEvent.Source.choices,
        "q": request.GET,
        "filtered": bool(query),
        "export_csv": "/api/v1/audit/export/?" + urlencode({**query, "format": "csv"}),
        "export_json": "/api/v1/audit/export/?" + urlencode({**query, "format": "json"}),
    }
    return render(request, "audit/list.html", context)
