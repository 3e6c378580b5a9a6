"""InstanceViewSet actions: migration (admins)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError

from cloudpanel.api import call_service, job_accepted
from cloudpanel.errors import Conflict
from cloudpanel.jobs.api.serializers import JobSerializer
from cloudpanel.projects import access
from hosts.models import Host

from ..models import Instance
from ..operations.migrate import LIVE_MIGRATE, MAX_BANDWIDTH_MIB


class MigrateSerializer(serializers.Serializer):
    host = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Target host id; omitted or null: the scheduler chooses a compatible host.",
    )
    auto_converge = serializers.BooleanField(
        default=False, help_text="Throttle the guest's vCPUs when memory does not converge."
    )
    post_copy = serializers.BooleanField(
        default=False,
        help_text="Switch to post-copy when pre-copy does not converge after a few passes.",
    )
    bandwidth_mib = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_BANDWIDTH_MIB,
        help_text="Bandwidth limit of the migration stream (and disk copy), MiB/s.",
    )


def _cold_migrate():
    try:
        from ..operations.cold_migrate import COLD_MIGRATE
    except ImportError:
        return None
    return COLD_MIGRATE


class MigrationActions:
    """Mixed into instances.api.views.InstanceViewSet."""

    @extend_schema(
        request=MigrateSerializer,
        responses={
            202: JobSerializer,
            400: OpenApiResponse(description="Bad input, or an unknown host."),
            403: OpenApiResponse(description="Only administrators migrate instances."),
            404: OpenApiResponse(description="No such instance (or not yours to see)."),
            409: OpenApiResponse(
                description="The target is incompatible (the reason says why), no host can "
                "take the instance, or the instance is busy."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def migrate(self, request, pk=None):
        """Move the instance to another host (admins): live when it runs (its disks are
        copied along when the target does not share their storage), cold when it is shut
        off. Answers 202 with the job; its progress shows libvirt's migration stats."""
        instance = self.get_object()
        if not access.is_admin(request.user):
            raise PermissionDenied("Only administrators may migrate instances.")
        data = MigrateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        host = None
        if params.get("host") is not None:
            host = Host.objects.filter(pk=params["host"]).first()
            if host is None:
                raise ValidationError({"host": [f"Unknown host {params['host']}."]})
        if instance.state == Instance.State.SHUTOFF and instance.current_job_id is None:
            cold = _cold_migrate()
            if cold is None:
                raise Conflict(
                    f"Instance {instance.name} is shut off and cold migration is not "
                    "available; start it to migrate it live."
                )
            job = call_service(cold.start, user=request.user, target=instance, host=host)
            return job_accepted(job, {"instance": instance.pk})
        job = call_service(
            LIVE_MIGRATE.start,
            user=request.user,
            target=instance,
            host=host,
            auto_converge=params["auto_converge"],
            post_copy=params["post_copy"],
            bandwidth_mib=params.get("bandwidth_mib"),
        )
        return job_accepted(job, {"instance": instance.pk})
