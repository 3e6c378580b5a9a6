"""Project quotas: usage counted from the rows, checks made atomic by locking the project's
quota row inside the creating transaction (K1 fills it)."""

from __future__ import annotations


def quota_usage(project) -> dict[str, dict]:
    """{resource: {"used": int, "limit": int | None}} for every Quota.RESOURCES entry."""
    return {}
