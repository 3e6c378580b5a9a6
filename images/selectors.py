"""Reads: which images a user sees, and who may change them."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from cloudpanel.jobs.models import Job
from cloudpanel.projects.access import can_act, is_admin, visible_project_ids
from cloudpanel.projects.models import Membership, Project

from .models import Image, ImageReplica


def image_list_for(user) -> QuerySet[Image]:
    """Public images for every logged-in user, project images for the project's members."""
    qs = Image.objects.select_related("project", "owner")
    ids = visible_project_ids(user)
    if ids is None:
        return qs
    if not user or not user.is_authenticated:
        return qs.none()
    return qs.filter(Q(visibility=Image.Visibility.PUBLIC) | Q(project_id__in=ids))


def image_get_for(user, pk) -> Image:
    """The image, or Http404 when it does not exist or the user may not see it."""
    try:
        return image_list_for(user).get(pk=pk)
    except (Image.DoesNotExist, ValueError, TypeError):
        raise Http404("No such image.") from None


def image_manageable_by(user, image: Image) -> bool:
    """Edit or delete: admins always; members only their project's non-public images."""
    if is_admin(user):
        return True
    return image.visibility == Image.Visibility.PROJECT and can_act(user, image.project)


def project_list_for_upload(user) -> QuerySet[Project]:
    if is_admin(user):
        return Project.objects.all()
    return Project.objects.filter(
        membership__user=user,
        membership__role__in=(Membership.Role.MANAGER, Membership.Role.MEMBER),
    ).distinct()


def image_replica_list(image: Image) -> QuerySet[ImageReplica]:
    return image.replicas.select_related("host").order_by("host__name", "pool")


def image_job_list(image: Image) -> QuerySet[Job]:
    return Job.objects.filter(target_type=Job.TargetType.IMAGE, target_id=image.id).select_related(
        "requested_by"
    )
