from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response

from .. import services
from ..selectors import hosts_with_allocation
from .serializers import HostSerializer


def _as_drf(exc: DjangoValidationError) -> ValidationError:
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)


class HostViewSet(viewsets.ModelViewSet):
    """Hypervisors under management (admins only)."""

    serializer_class = HostSerializer
    permission_classes = [IsAdminUser]
    filterset_fields = ["status", "enabled", "maintenance", "transport"]

    def get_queryset(self):
        return hosts_with_allocation().order_by("name")

    def perform_create(self, serializer):
        try:
            serializer.instance = services.host_create(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from exc

    def perform_update(self, serializer):
        try:
            services.host_update(host=serializer.instance, **serializer.validated_data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from exc

    def perform_destroy(self, instance):
        services.host_delete(host=instance)

    def create(self, request, *args, **kwargs):
        response = super().create(request, *args, **kwargs)
        response.data = self.get_serializer(self.get_queryset().get(pk=response.data["id"])).data
        return response

    @extend_schema(request=None, responses=HostSerializer)
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        """Sync capabilities, pools and networks from libvirt now."""
        host = services.host_sync(host=self.get_object())
        host = self.get_queryset().get(pk=host.pk)
        return Response(self.get_serializer(host).data, status=status.HTTP_200_OK)
