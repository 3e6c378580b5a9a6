"""Who may see and do what: the one place the UI, the API and the websockets ask.

Admins (staff) see and manage everything. Other users see the objects of the projects they
are members of; 'viewer' members may look but not act. Objects of other projects are
reported as not found, so their existence does not leak.
"""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Membership, Project


def is_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_staff)


def visible_project_ids(user) -> list[int] | None:
    """Project ids the user may see; None means all (admin)."""
    if is_admin(user):
        return None
    if not user or not user.is_authenticated:
        return []
    return list(Membership.objects.filter(user=user).values_list("project_id", flat=True))


def scope_to_user(queryset: QuerySet, user, project_field: str = "project") -> QuerySet:
    """Limit a queryset of project-owned rows to what the user may see."""
    ids = visible_project_ids(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{project_field}_id__in": ids})


def can_view(user, project: Project | None) -> bool:
    if is_admin(user):
        return True
    if project is None or not user.is_authenticated:
        return False
    return Membership.objects.filter(user=user, project=project).exists()


def can_act(user, project: Project | None) -> bool:
    """May the user change things in this project (start, stop, delete...)?"""
    if is_admin(user):
        return True
    if project is None or not user.is_authenticated:
        return False
    return Membership.objects.filter(
        user=user, project=project, role=Membership.Role.MEMBER
    ).exists()
