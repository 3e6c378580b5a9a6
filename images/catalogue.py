"""The image catalogue: who may add an image where and with which visibility, and changing or
deleting an image's entry.

How a file gets in is intake's business (images.intake); copies on hosts are replicas'
(images.replicas).
"""

from __future__ import annotations

import contextlib

from django.db.models import ProtectedError

from cloudpanel.audit.decorators import audited
from cloudpanel.errors import Conflict, InvalidInput, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.projects.access import can_act, is_admin
from cloudpanel.projects.models import Project
from cloudpanel.projects.services import project_for_create

from .models import Image
from .replicas import replica_volumes_delete
from .selectors import image_manageable_by
from .store import image_path

_UPDATABLE = {
    "name",
    "os_type",
    "min_disk_gib",
    "min_ram_mib",
    "cloud_init",
    "default_user",
    "firmware",
    "disk_bus",
    "visibility",
    "project",
}


def _resolve_project(user, project: Project | None) -> Project:
    # The rule for every create: the project given, else the user's only one (admins: the
    # default project), else 400 "project is required".
    return project_for_create(user, project)


def new_image(
    *,
    user,
    name: str,
    disk_format: str,
    project: Project | None = None,
    visibility: str | None = None,
    os_type: str | None = None,
    min_disk_gib: int | None = None,
    min_ram_mib: int | None = None,
    cloud_init: bool | None = None,
    default_user: str | None = None,
    firmware: str | None = None,
    disk_bus: str | None = None,
    source_url: str = "",
) -> Image:
    """An unsaved, validated Image after the permission checks (intake saves it).

    The one list of an image's fields: upload and URL import pass theirs through."""
    if not user or not user.is_authenticated:
        raise PermissionDenied("Log in to add images.")
    project = _resolve_project(user, project)
    if visibility is None:
        visibility = Image.Visibility.PUBLIC if is_admin(user) else Image.Visibility.PROJECT
    if visibility == Image.Visibility.PUBLIC and not is_admin(user):
        raise PermissionDenied("Only administrators can add public images.")
    if not can_act(user, project):
        raise PermissionDenied(f"You may not add images to project {project.name}.")
    image = Image(
        name=name,
        disk_format=disk_format,
        project=project,
        visibility=visibility,
        os_type=os_type if os_type is not None else "linux",
        min_disk_gib=min_disk_gib or 0,
        min_ram_mib=min_ram_mib or 0,
        cloud_init=bool(cloud_init),
        default_user=default_user or "",
        firmware=firmware or Image.Firmware.BIOS,
        disk_bus=disk_bus or Image.DiskBus.VIRTIO,
        owner=user,
        source_url=source_url,
    )
    image.full_clean(exclude=["file"])
    return image


@audited("image.update", target="image")
def image_update(*, image: Image, user, **fields) -> Image:
    """Change an image's metadata (its file and sizes never change)."""
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise InvalidInput({f: "This field cannot be changed." for f in sorted(unknown)})
    if not image_manageable_by(user, image):
        raise PermissionDenied("You may not change this image.")
    if fields.get("visibility") == Image.Visibility.PUBLIC and not is_admin(user):
        raise PermissionDenied("Only administrators can make images public.")
    project = fields.get("project")
    if project is not None and project != image.project and not can_act(user, project):
        raise PermissionDenied(f"You may not move images into project {project.name}.")
    for field, value in fields.items():
        setattr(image, field, value)
    image.full_clean()
    image.save()
    return image


@audited("image.delete", target="image")
def image_delete(*, image: Image, user) -> list[str]:
    """Delete the image, its file and its copies on hosts; returns problems met on hosts.

    Refused (Conflict) while an instance uses it or a job is working on it.
    """
    if not image_manageable_by(user, image):
        raise PermissionDenied("You may not delete this image.")
    used = image.instances.count()
    if used:
        raise Conflict(f"Image {image.name} is used by {used} instance(s); delete them first.")
    busy = Job.objects.filter(
        target_type=Job.TargetType.IMAGE, target_id=image.id, status__in=Job.ACTIVE
    )
    if busy.exists():
        raise Conflict(f"Image {image.name} has a job running; wait for it or cancel it.")
    # Read before the rows go with the image; the volumes are removed once it is gone.
    replicas = list(image.replicas.select_related("host"))
    file = image.file
    try:
        image.delete()
    except ProtectedError as exc:
        raise Conflict(f"Image {image.name} is in use; it cannot be deleted.") from exc
    if file:
        with contextlib.suppress(ValueError):
            image_path(file).unlink(missing_ok=True)
    return replica_volumes_delete(replicas)
