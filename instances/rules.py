"""The rules every instance change obeys: names, who may act, a reachable host, an image
the user may use and a flavor big enough for it. Services and operations both apply them."""

from __future__ import annotations

import math
import re

from django.core.exceptions import ValidationError

from cloudpanel.errors import Conflict, HostUnavailable, InvalidInput, PermissionDenied
from cloudpanel.projects import access
from cloudpanel.projects.models import name_validator
from hosts.models import Host
from hosts.selectors import GIB
from images.models import Image

from . import scheduler
from .models import Flavor, Instance

NAME_MAX = 63
# Belt and braces: the name validator already allows only [A-Za-z0-9._-].
_XML_META = re.compile(r"[<>&\"'\x00-\x1f]")
# States in which nothing but delete makes sense.
GONE = (Instance.State.MISSING, Instance.State.DELETING)


def validate_name(value: str, field: str = "name") -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput({field: ["A name is required."]})
    if len(value) > NAME_MAX:
        raise InvalidInput({field: [f"At most {NAME_MAX} characters."]})
    if _XML_META.search(value):
        raise InvalidInput({field: ["Characters like < > & \" ' are not allowed."]})
    try:
        name_validator(value)
    except ValidationError as exc:
        raise InvalidInput({field: exc.messages}) from None
    return value


def require_act(user, instance_or_project) -> None:
    project = getattr(instance_or_project, "project", instance_or_project)
    if not access.can_act(user, project):
        raise PermissionDenied("You may not change instances in this project.")


def require_host_online(instance: Instance, user) -> Host:
    host = instance.host
    if host is None:
        raise Conflict(f"Instance {instance.name} has no host.")
    if host.status != Host.Status.ONLINE:
        if not access.sees_infrastructure(user):  # the host's name and error are for admins
            raise HostUnavailable(
                f"The host of instance {instance.name} is unreachable right now; "
                "try again later or ask an administrator."
            )
        why = f": {host.last_error}" if host.last_error else ""
        raise HostUnavailable(f"Host {host.name} is {host.status}{why}")
    return host


def no_room_message(user, exc: scheduler.NoValidHost, flavor: Flavor) -> str:
    """The scheduler's reasons name hosts and pools: for admins only."""
    if access.sees_infrastructure(user):
        return str(exc)
    return (
        f"No host has room for flavor {flavor.name} right now; try a smaller flavor "
        "or ask an administrator."
    )


def image_visible(user, image: Image) -> bool:
    if image.visibility == Image.Visibility.PUBLIC:
        return True
    return access.can_view(user, image.project)


def check_flavor_fits_image(flavor: Flavor, image: Image | None, field: str = "flavor") -> None:
    if image is None:
        return
    problems = []
    if image.min_disk_gib and flavor.disk_gib < image.min_disk_gib:
        problems.append(f"image {image.name} needs at least {image.min_disk_gib} GiB of disk")
    if image.min_ram_mib and flavor.ram_mib < image.min_ram_mib:
        problems.append(f"image {image.name} needs at least {image.min_ram_mib} MiB of RAM")
    if (
        image.disk_format != Image.Format.ISO
        and image.virtual_size
        and image.virtual_size > flavor.disk_gib * GIB
    ):
        needed = math.ceil(image.virtual_size / GIB)
        problems.append(
            f"image {image.name} has a virtual size of {needed} GiB, more than the "
            f"flavor's {flavor.disk_gib} GiB disk"
        )
    if problems:
        raise InvalidInput({field: [f"Flavor {flavor.name} is too small: {'; '.join(problems)}."]})
