"""/api/v1/audit/: the audit, read-only; filterable, newest first, exportable."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, renderers, serializers, viewsets
from rest_framework.decorators import action

from cloudpanel.api import ApiContract
from cloudpanel.pagination import CursorPagination
from cloudpanel.projects.access import is_admin

from .export import export_response
from .filters import AuditEventFilter
from .models import AuditEvent
from .selectors import audit_events_for, present


class AuditEventSerializer(serializers.Serializer):
    """One event as the caller may read it (cloudpanel.audit.selectors.present)."""

    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    user_id = serializers.IntegerField(allow_null=True)
    username = serializers.CharField(help_text="Blank for the system's own actions.")
    project_id = serializers.IntegerField(allow_null=True)
    project_name = serializers.CharField()
    action = serializers.CharField(help_text='"instance.start", "host.create", "auth.login"...')
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    target_name = serializers.CharField()
    params = serializers.DictField(help_text="Secrets never stored; user data as size+hash.")
    result = serializers.ChoiceField(choices=AuditEvent.Result.choices)
    message = serializers.CharField()
    job_id = serializers.IntegerField(allow_null=True)
    source = serializers.ChoiceField(choices=AuditEvent.Source.choices)
    client_address = serializers.IPAddressField(allow_null=True)

    def to_representation(self, instance):
        request = self.context["request"]
        admin = self.context.get("admin")
        return present(instance, request.user, admin=admin)


class CSVRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes | str) else b""


class AuditEventViewSet(
    ApiContract, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The audit, newest first (keyset pages: it grows without end)."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    pagination_class = CursorPagination
    ordering_fields = ["id", "at"]
    ordering = ["-id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema's look at the view
            return AuditEvent.objects.none()
        return audit_events_for(self.request.user)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["admin"] = is_admin(self.request.user)
        return context

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=["csv", "json"], description="default json"
            )
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/json"): AuditEventSerializer(many=True),
        },
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[renderers.JSONRenderer, CSVRenderer],
        pagination_class=None,
    )
    def export(self, request):
        """The filtered events (newest first, at most AUDIT_EXPORT_MAX_ROWS), streamed."""
        rows = self.filter_queryset(self.get_queryset())
        fmt = request.accepted_renderer.format
        return export_response(
            rows, request.user, admin=is_admin(request.user), fmt=fmt, request=request
        )
