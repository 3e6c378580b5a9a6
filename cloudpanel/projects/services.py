"""Project writes: the default project and memberships (open sockets hear of membership
changes through cloudpanel.projects.events, called by the signals)."""

from __future__ import annotations

from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from cloudpanel.audit.jobs import refusal_message, refusal_result
from cloudpanel.audit.services import audit_record
from cloudpanel.errors import Conflict, InvalidInput, NotFound, PermissionDenied

from . import access
from .models import DEFAULT_PROJECT_NAME, Membership, Project
from .quotas import quota_set


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


# The API and the console pages call these; who may is asked of cloudpanel.projects.access.
# Each change is audited: ok, or denied/failed with the refusal's message.


@contextmanager
def _audit(action: str, *, by=None, project=None, target=None, params=None):
    """Record `action` once the block ends: ok, or the refusal (re-raised). `by` None: the
    request's user (audit_record reads it)."""
    try:
        yield
    except Exception as exc:
        audit_record(action=action, user=by, project=project, target=target, params=params,
                     result=refusal_result(exc), message=refusal_message(exc))  # fmt: skip
        raise
    audit_record(action=action, user=by, project=project, target=target, params=params)


def project_for_create(user, project: Project | None) -> Project:
    """The project something is created in: the one given, else the user's only project.

    Admins who name none get the default project. Anyone else with several projects (or
    none) must name one.
    """
    if project is not None:
        return project
    ids = access.visible_project_ids(user)
    if ids is None:
        return project_get_default()
    if len(ids) == 1:
        return Project.objects.get(pk=ids[0])
    why = "you are a member of several projects" if ids else "you are a member of no project"
    raise InvalidInput({"project": [f"project is required: {why}."]})


def project_create(*, name: str, description: str = "") -> Project:
    project = Project(name=name, description=description or "")
    with _audit("project.create", target=project, params={"name": name}):
        project.full_clean()
        project.save()
    return project


def project_update(project: Project, **fields) -> Project:
    changed = {f: fields[f] for f in ("name", "description") if f in fields}
    with _audit("project.update", target=project, params=changed):
        for field, value in changed.items():
            setattr(project, field, value)
        project.full_clean()
        project.save()
    return project


def project_delete(project: Project) -> None:
    # The event names the project but links no row: the project is gone after this.
    target = {"target_type": "project", "target_id": project.pk, "target_name": project.name}
    try:
        project.delete()
    except ProtectedError:
        # Instances, images and backups keep their project (PROTECT): say so, not a 500.
        message = (
            f"Project {project.name} still has instances, images or backups; delete them first."
        )
        audit_record(action="project.delete", result="failed", message=message, **target)
        raise Conflict(message) from None
    audit_record(action="project.delete", **target)


def _other_managers(project: Project, user) -> bool:
    return (
        Membership.objects.filter(project=project, role=Membership.Role.MANAGER)
        .exclude(user=user)
        .exists()
    )


def member_add(*, by, project: Project, user, role: str) -> Membership:
    """A manager (or admin) adds a user to the project with a role."""
    with _audit("project.member_add", by=by, project=project, target=user,
                params={"role": role}):  # fmt: skip
        access_require_manage(by, project)
        _validate_role(role)
        if not user.is_active:
            raise InvalidInput({"user": [f"User {user.username} is deactivated."]})
        with transaction.atomic():
            if Membership.objects.filter(project=project, user=user).exists():
                raise Conflict(f"{user.username} is already a member of {project.name}.")
            return membership_set(project=project, user=user, role=role)


def member_change(*, by, project: Project, user, role: str) -> Membership:
    """Change a member's role; the last manager stays one unless an admin says otherwise."""
    with _audit("project.member_change", by=by, project=project, target=user,
                params={"role": role}):  # fmt: skip
        access_require_manage(by, project)
        _validate_role(role)
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=project.pk).exists()
            membership = Membership.objects.filter(project=project, user=user).first()
            if membership is None:
                raise NotFound(f"{user.username} is not a member of {project.name}.")
            if membership.role == Membership.Role.MANAGER and role != Membership.Role.MANAGER:
                _require_another_manager(by, project, user)
            return membership_set(project=project, user=user, role=role)


def member_remove(*, by, project: Project, user) -> None:
    with _audit("project.member_remove", by=by, project=project, target=user):
        access_require_manage(by, project)
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=project.pk).exists()
            membership = Membership.objects.filter(project=project, user=user).first()
            if membership is None:
                raise NotFound(f"{user.username} is not a member of {project.name}.")
            if membership.role == Membership.Role.MANAGER:
                _require_another_manager(by, project, user)
            membership_remove(project=project, user=user)


def _require_another_manager(by, project: Project, user) -> None:
    if not _other_managers(project, user) and not access.may_remove_last_manager(by):
        raise Conflict(
            f"{user.username} is the last manager of {project.name}: make someone else "
            "manager first (or ask an administrator)."
        )


def _validate_role(role: str) -> None:
    if role not in Membership.Role.values:
        raise InvalidInput({"role": [f"Choose one of: {', '.join(Membership.Role.values)}."]})


def access_require_manage(by, project: Project) -> None:
    if not access.can_manage_members(by, project):
        raise PermissionDenied(f"Only managers of {project.name} may manage its members.")


def quota_update(*, by, project: Project, **limits):
    with _audit("project.quota_set", by=by, project=project, target=project, params=limits):
        if not access.can_set_quota(by):
            raise PermissionDenied("Only administrators set quotas.")
        return quota_set(project, **limits)


# Users (admins only; the API and pages check access.can_administer first).


def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False,
                first_name: str = "", last_name: str = ""):  # fmt: skip
    User = get_user_model()
    user = User(username=username, email=email or "", is_staff=bool(is_staff),
                first_name=first_name or "", last_name=last_name or "")  # fmt: skip
    with _audit("user.create", target=user, params={"username": username, "is_staff": is_staff}):
        _set_password(user, password)
        user.full_clean(exclude=["password"])
        user.save()
    return user


def user_update(user, *, password: str | None = None, **fields):
    changed = {
        f: fields[f]
        for f in ("username", "email", "first_name", "last_name", "is_staff", "is_active")
        if f in fields
    }
    with _audit("user.update", target=user, params={**changed, "password_set": bool(password)}):
        for field, value in changed.items():
            setattr(user, field, value)
        if password:
            _set_password(user, password)
        user.full_clean(exclude=["password"])
        user.save()
    return user


def _set_password(user, password: str) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput({"password": exc.messages}) from None
    user.set_password(password)


def user_deactivate(user, *, by) -> None:
    with _audit("user.deactivate", by=by, target=user):
        if user.pk == getattr(by, "pk", None):
            raise Conflict("You cannot deactivate yourself.")
        user.is_active = False
        user.save(update_fields=["is_active"])
