from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cloudpanel.api import ApiContract, call_service
from cloudpanel.live import metrics as live_metrics
from cloudpanel.live.api import MetricsQuerySerializer, MetricsSerializer, metrics_response_data
from cloudpanel.permissions import AdminOnly

from .. import services
from ..filters import HostFilter
from ..selectors import host_list_with_allocation
from .continuity import HostContinuityActions
from .serializers import HostSerializer


class HostViewSet(ApiContract, HostContinuityActions, viewsets.ModelViewSet):
    """Hypervisors under management (admins only)."""

    serializer_class = HostSerializer
    permission_classes = [AdminOnly]
    filterset_class = HostFilter
    ordering_fields = ["name", "status", "created_at", "id"]
    ordering = ["name"]

    def get_queryset(self):
        return host_list_with_allocation().order_by("name")

    def perform_create(self, serializer):
        serializer.instance = call_service(services.host_create, **serializer.validated_data)

    def perform_update(self, serializer):
        call_service(services.host_update, host=serializer.instance, **serializer.validated_data)

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

    @extend_schema(request=None, parameters=[MetricsQuerySerializer], responses=MetricsSerializer)
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        """Recent totals over the host's running instances, oldest first (the last hour)."""
        host = self.get_object()
        return Response(metrics_response_data(live_metrics.HOST, host.pk, request.GET))
