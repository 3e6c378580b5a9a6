"""Writing audit events: the one function every state-changing path calls (K4 fills it)."""

from __future__ import annotations


def audit_record(
    *,
    action: str,
    user=None,
    project=None,
    target=None,
    target_type: str = "",
    target_id="",
    target_name: str = "",
    params: dict | None = None,
    result: str = "ok",
    message: str = "",
    job=None,
):
    """Record one action (never raises into the caller). `target` (a model instance) fills
    target_type/id/name when given; the request's client address and source (UI/API) come
    from the request being served (cloudpanel/audit/context.py), none for the system."""
