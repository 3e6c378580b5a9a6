"""Reading the audit: who sees which events, and what of them.

Admins see every event. Others see the events of the projects they belong to (viewers
included: reading is what they do), and their own events of no project (sign-ins, key
pairs); never host details: params are cut to the public job keys, messages of admins'
and job events are replaced by what tenants read, client addresses are only their own.
"""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from cloudpanel.projects.access import (
    GENERIC_JOB_FAILURE,
    PUBLIC_JOB_KEYS,
    is_admin,
    token_of,
    visible_project_ids,
)

from .models import AuditEvent

FIELDS = (
    "id", "at", "user_id", "username", "project_id", "action", "target_type", "target_id",
    "target_name", "params", "result", "message", "job_id", "source", "client_address",
)  # fmt: skip


def audit_events_for(user) -> QuerySet:
    """The events `user` may read, newest first, as dicts (one query, no per-row lookups)."""
    rows = AuditEvent.objects.order_by("-id")
    if not (user and user.is_authenticated):
        rows = rows.none()
    ids = visible_project_ids(user)
    if ids is not None:
        mine = Q(project_id__in=ids)
        token = token_of(user)
        if user.is_authenticated and (
            token is None or token.project_id is None
        ):  # a scoped token: its project only
            mine |= Q(user=user, project__isnull=True)
        rows = rows.filter(mine)
    return rows.annotate(
        project_name=F("project__name"),
        user_is_staff=F("user__is_staff"),
        job_public_error=F("job__public_error"),
    ).values(*FIELDS, "project_name", "user_is_staff", "job_public_error")


def _public(data):
    if not isinstance(data, dict):
        return {}
    shown = {k: v for k, v in data.items() if k in PUBLIC_JOB_KEYS or k == "status"}
    if isinstance(data.get("result"), dict):
        shown["result"] = _public(data["result"])
    return shown


def present(row: dict, viewer, *, admin: bool | None = None) -> dict:
    """One event as `viewer` may read it (`admin`: is_admin(viewer), when known)."""
    admin = is_admin(viewer) if admin is None else admin
    event = {k: row[k] for k in FIELDS}
    event["project_name"] = row.get("project_name") or ""
    if admin:
        return event
    event["params"] = _public(row["params"])
    if row["job_id"] is not None:
        failed = row["result"] == AuditEvent.Result.FAILED
        event["message"] = (row.get("job_public_error") or GENERIC_JOB_FAILURE) if failed else ""
    elif row.get("user_is_staff"):
        event["message"] = ""  # an administrator's refusals may name hosts
    if row["user_id"] != viewer.pk:
        event["client_address"] = None
    return event
