"""HostViewSet actions: maintenance and evacuation (admins only, as the whole viewset)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from cloudpanel.api import call_service, job_accepted
from cloudpanel.jobs.api.serializers import JobSerializer

from .. import services
from ..operations import EVACUATE
from .serializers import HostSerializer


class MaintenanceSerializer(serializers.Serializer):
    maintenance = serializers.BooleanField(
        help_text="true: the host takes no new instances (placements and migration targets "
        "refuse it); false: it does again."
    )


class EvacuateSerializer(serializers.Serializer):
    include_shutoff = serializers.BooleanField(
        default=False, help_text="Also cold-migrate the shut-off instances."
    )


class HostContinuityActions:
    """Mixed into hosts.api.views.HostViewSet."""

    @extend_schema(request=MaintenanceSerializer, responses=HostSerializer)
    @action(detail=True, methods=["post"])
    def maintenance(self, request, pk=None):
        """Put the host into maintenance (no new placements) or take it out."""
        data = MaintenanceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        host = call_service(
            services.host_set_maintenance,
            host=self.get_object(),
            maintenance=data.validated_data["maintenance"],
        )
        host = self.get_queryset().get(pk=host.pk)
        return Response(self.get_serializer(host).data, status=status.HTTP_200_OK)

    @extend_schema(request=EvacuateSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def evacuate(self, request, pk=None):
        """Put the host into maintenance and move its instances to other hosts: one parent
        job whose children are the migrations; its result reports each instance's outcome
        (instances that cannot move stay, with the reason)."""
        data = EvacuateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = call_service(
            EVACUATE.start,
            user=request.user,
            target=self.get_object(),
            include_shutoff=data.validated_data["include_shutoff"],
        )
        return job_accepted(job, {"host": int(pk)})
