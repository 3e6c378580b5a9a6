"""/api/v1/tokens/: each user's own personal API tokens (admins' too: they are personal).

The secret is in the 201 answer of a create only; lists and details never carry it.
DELETE (or POST .../revoke/) revokes: the row stays, so its last use remains visible.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cloudpanel.api import ApiContract
from cloudpanel.projects import access
from cloudpanel.projects.models import Project

from . import tokens
from .models import ApiToken


class ApiTokenSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "project",
            "read_only",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "created_at",
            "state",
        ]
        read_only_fields = fields

    def get_state(self, token) -> str:
        """active, expired or revoked."""
        return tokens.token_state(token)


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret: shown this once only.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    expires_in_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=tokens.MAX_DAYS,
        help_text=f"Default {tokens.DEFAULT_DAYS}; every token expires.",
    )
    project = serializers.IntegerField(
        required=False, allow_null=True, help_text="Scope: the token reaches this project only."
    )
    read_only = serializers.BooleanField(default=False)

    def validate_project(self, value):
        if value is None:
            return None
        user = self.context["request"].user
        project = Project.objects.filter(pk=value).first()
        if project is None or not access.can_view(user, project):
            raise serializers.ValidationError("No such project.")
        return project


class ApiTokenViewSet(
    ApiContract,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Personal API tokens: send one as `Authorization: Bearer <token>` (or `Token <token>`)."""

    serializer_class = ApiTokenSerializer
    filterset_fields = ["read_only"]
    ordering_fields = ["created_at", "name", "expires_at", "last_used_at", "id"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return ApiToken.objects.none()
        return tokens.tokens_of(self.request.user)

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: ApiTokenCreatedSerializer})
    def create(self, request, *args, **kwargs):
        data = ApiTokenCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        # InvalidInput and PermissionDenied: the API's exception handler makes them 400 / 403.
        issued = tokens.issue_token(
            request.user,
            via_token=access.token_of(request.user),
            **data.validated_data,
        )
        body = ApiTokenCreatedSerializer(issued.token).data
        body["token"] = issued.secret
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        tokens.revoke_token(instance)

    @extend_schema(request=None, responses={200: ApiTokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """Revoke the token: it is refused from now on (401)."""
        token = tokens.revoke_token(self.get_object())
        return Response(ApiTokenSerializer(token).data)
