"""/api/v1/projects/ (with its members and quota) and /api/v1/users/.

Thin: who may is the access layer's (cloudpanel.projects.access), the writes are the
services'. Projects a user is not in answer 404, as if they did not exist.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from cloudpanel.api import ApiContract, call_service
from cloudpanel.filters import MAX_ID

from . import access, services
from .filters import ProjectFilter, UserFilter
from .models import Membership, Project
from .quotas import quota_usage
from .serializers import (
    MemberAddSerializer,
    MemberRoleSerializer,
    MemberSerializer,
    ProjectSerializer,
    QuotaLimitsSerializer,
    QuotaSerializer,
    UserCreateSerializer,
    UserSerializer,
    UserUpdateSerializer,
)

ADMIN_WRITES = {"create", "update", "partial_update", "destroy"}


class ProjectPermission(BasePermission):
    """Signed-in users read the projects they are in; admins create, change and delete
    projects; managers (and admins) manage members; admins set quotas."""

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        if view.action in ADMIN_WRITES:
            return access.can_administer(request.user)
        return True

    def has_object_permission(self, request, view, project):
        if request.method in SAFE_METHODS:
            return access.can_view(request.user, project)
        if view.action in ("members", "member", "quota"):
            # The services ask the access layer (and audit a refusal): a 403 from there.
            return access.can_view(request.user, project)
        return access.can_administer(request.user)


class UsersPermission(BasePermission):
    """Users are for admins only, reading too (a read-only token reads, never writes)."""

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS:
            return access.is_admin(request.user)
        return access.can_administer(request.user)


def _quota_body(project: Project) -> dict:
    return {"project": project.pk, **quota_usage(project)}


@extend_schema_view(
    list=extend_schema(tags=["projects"], summary="List the projects you are a member of"),
    retrieve=extend_schema(tags=["projects"], summary="Read a project"),
    create=extend_schema(tags=["projects"], summary="Create a project (admins)"),
    update=extend_schema(tags=["projects"], summary="Replace a project (admins)"),
    partial_update=extend_schema(tags=["projects"], summary="Change a project (admins)"),
    destroy=extend_schema(
        tags=["projects"],
        summary="Delete a project (admins)",
        description="Refused (409) while instances, images or backups still belong to it.",
    ),
)
class ProjectViewSet(ApiContract, viewsets.ModelViewSet):
    """Projects: admins see and manage them all, everyone else reads their own."""

    serializer_class = ProjectSerializer
    permission_classes = [ProjectPermission]
    filterset_class = ProjectFilter
    ordering_fields = ["name", "created_at", "id"]
    ordering = ["name"]

    def get_queryset(self):
        ids = access.visible_project_ids(self.request.user)
        projects = Project.objects.order_by("name")
        return projects if ids is None else projects.filter(id__in=ids)

    def perform_create(self, serializer):
        serializer.instance = call_service(services.project_create, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = call_service(
            services.project_update, project=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.project_delete(instance)

    # Members

    @extend_schema(
        methods=["get"],
        tags=["projects"],
        summary="List the project's members and their roles",
        responses=MemberSerializer(many=True),
    )
    @extend_schema(
        methods=["post"],
        tags=["projects"],
        summary="Add a member (the project's managers and admins)",
        request=MemberAddSerializer,
        responses={201: MemberSerializer},
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None, filterset_class=None)
    def members(self, request, pk=None):
        project = self.get_object()
        if request.method == "GET":
            rows = Membership.objects.filter(project=project).select_related("user")
            return Response(MemberSerializer(rows.order_by("user__username"), many=True).data)
        body = MemberAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        membership = call_service(
            services.member_add, by=request.user, project=project, **body.validated_data
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        methods=["put", "patch"],
        tags=["projects"],
        summary="Change a member's role (the project's managers and admins)",
        description="The last manager keeps the role unless an admin changes it (409).",
        parameters=[OpenApiParameter("user_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        request=MemberRoleSerializer,
        responses=MemberSerializer,
    )
    @extend_schema(
        methods=["delete"],
        tags=["projects"],
        summary="Remove a member (the project's managers and admins)",
        description="The last manager stays unless an admin removes them (409).",
        parameters=[OpenApiParameter("user_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        request=None,
        responses={204: None},
    )
    @action(
        detail=True,
        methods=["put", "patch", "delete"],
        # Any segment: a user id that is not one gets the API's 404, not the URL conf's page.
        url_path=r"members/(?P<user_id>[^/.]+)",
        pagination_class=None,
        filterset_class=None,
    )
    def member(self, request, pk=None, user_id=None):
        project = self.get_object()
        if not (user_id.isascii() and user_id.isdigit() and 0 < int(user_id) <= MAX_ID):
            raise NotFound()
        membership = get_object_or_404(
            Membership.objects.select_related("user"), project=project, user_id=int(user_id)
        )
        if request.method == "DELETE":
            services.member_remove(by=request.user, project=project, user=membership.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        body = MemberRoleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        membership = call_service(
            services.member_change,
            by=request.user,
            project=project,
            user=membership.user,
            role=body.validated_data["role"],
        )
        return Response(MemberSerializer(membership).data)

    # Quota

    @extend_schema(
        methods=["get"],
        tags=["projects"],
        summary="The project's quota: each limit (null: unlimited) with what is used",
        responses=QuotaSerializer,
    )
    @extend_schema(
        methods=["put"],
        tags=["projects"],
        summary="Set the project's quota (admins)",
        description="Every limit; one left out or null is unlimited.",
        request=QuotaLimitsSerializer,
        responses=QuotaSerializer,
    )
    @action(detail=True, methods=["get", "put"], pagination_class=None, filterset_class=None)
    def quota(self, request, pk=None):
        project = self.get_object()
        if request.method == "PUT":
            body = QuotaLimitsSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            limits = {r: body.validated_data.get(r) for r in QuotaLimitsSerializer.Meta.fields}
            call_service(services.quota_update, by=request.user, project=project, **limits)
        return Response(_quota_body(project))


@extend_schema_view(
    list=extend_schema(tags=["users"], summary="List users (admins)"),
    retrieve=extend_schema(tags=["users"], summary="Read a user (admins)"),
    create=extend_schema(
        tags=["users"],
        summary="Create a user (admins)",
        description="The password must pass the server's password validators.",
        request=UserCreateSerializer,
    ),
    update=extend_schema(
        tags=["users"], summary="Replace a user (admins)", request=UserUpdateSerializer
    ),
    partial_update=extend_schema(
        tags=["users"], summary="Change a user (admins)", request=UserUpdateSerializer
    ),
    destroy=extend_schema(
        tags=["users"],
        summary="Deactivate a user (admins)",
        description="The account is kept (its history stays) but can no longer sign in.",
    ),
)
class UserViewSet(ApiContract, viewsets.ModelViewSet):
    permission_classes = [UsersPermission]
    filterset_class = UserFilter
    ordering_fields = ["username", "date_joined", "last_login", "id"]
    ordering = ["username"]

    def get_queryset(self):
        return (
            get_user_model()
            .objects.prefetch_related("membership_set__project")
            .order_by("username")
        )

    def get_serializer_class(self):
        if self.action == "create":
            return UserCreateSerializer
        if self.action in ("update", "partial_update"):
            return UserUpdateSerializer
        return UserSerializer

    def perform_create(self, serializer):
        serializer.instance = call_service(services.user_create, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = call_service(
            services.user_update, user=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.user_deactivate(instance, by=self.request.user)
