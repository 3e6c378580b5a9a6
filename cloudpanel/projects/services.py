"""Project writes: the default project and memberships (open sockets hear of membership
changes through cloudpanel.projects.events, called by the signals)."""

from __future__ import annotations

from .models import DEFAULT_PROJECT_NAME, Membership, Project


def project_get_default() -> Project:
    """The project that API calls use when they name none (created on first use)."""
    project, _ = Project.objects.get_or_create(
        name=DEFAULT_PROJECT_NAME, defaults={"description": "Default project"}
    )
    return project


def membership_set(*, project: Project, user, role: str = Membership.Role.MEMBER) -> Membership:
    """Add the user to the project, or change their role there."""
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership  # the post_save signal tells the user's sockets


def membership_remove(*, project: Project, user) -> bool:
    """Take the user out of the project. Their open sockets stop getting its events (the
    post_delete signal below tells them, as for memberships deleted any other way)."""
    deleted, _ = Membership.objects.filter(project=project, user=user).delete()
    return bool(deleted)
