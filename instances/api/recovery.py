"""InstanceViewSet actions: recovery of a host-down instance (admins only)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from cloudpanel.api import call_service, job_accepted
from cloudpanel.errors import PermissionDenied
from cloudpanel.jobs.api.serializers import JobSerializer
from cloudpanel.projects import access
from hosts.models import Host

from .. import hostdown
from ..operations.rebuild import REBUILD, SOURCES


class RebuildSerializer(serializers.Serializer):
    source = serializers.ChoiceField(
        choices=SOURCES, required=False, allow_null=True,
        help_text="Rebuild from a disk mirror or a backup; default: the newest copy of either.",
    )  # fmt: skip
    source_id = serializers.IntegerField(
        required=False, allow_null=True, min_value=1,
        help_text="The DiskMirror or Backup id; default: the newest of `source`.",
    )  # fmt: skip
    host = serializers.PrimaryKeyRelatedField(
        queryset=Host.objects.all(), required=False, allow_null=True,
        help_text="The host to rebuild on; default: one with room that sees the copy.",
    )  # fmt: skip


class RecoveryVolumeSerializer(serializers.Serializer):
    host = serializers.IntegerField()
    host_name = serializers.CharField()
    pool = serializers.CharField()
    name = serializers.CharField()
    path = serializers.CharField()
    format = serializers.CharField()


class RecoverySourceSerializer(serializers.Serializer):
    source = serializers.ChoiceField(choices=SOURCES)
    id = serializers.IntegerField(help_text="The DiskMirror or Backup id.")
    copy_of = serializers.DateTimeField(
        allow_null=True, help_text="When the copy last equalled the disk."
    )
    window_seconds = serializers.FloatField(
        allow_null=True, help_text="The data loss window: how old the copy is, in seconds."
    )
    basis = serializers.CharField(help_text="How copy_of was found.")
    volume = RecoveryVolumeSerializer()
    target_host = serializers.IntegerField(
        allow_null=True, help_text="The host a rebuild from this copy would use."
    )
    target_host_name = serializers.CharField()
    problem = serializers.CharField(help_text="Why no host can be rebuilt from it, if none can.")


class RecoverySerializer(serializers.Serializer):
    instance = serializers.IntegerField()
    state = serializers.CharField()
    host_down = serializers.BooleanField()
    host = serializers.IntegerField(allow_null=True)
    host_name = serializers.CharField()
    host_status = serializers.CharField()
    host_last_seen_at = serializers.DateTimeField(allow_null=True)
    sources = RecoverySourceSerializer(many=True, help_text="Newest copy first.")


class RecoveryActions:
    """Mixed into instances.api.views.InstanceViewSet."""

    @extend_schema(request=None, responses=RecoverySerializer)
    @action(detail=True, methods=["get"])
    def recovery(self, request, pk=None):
        """The copies a host-down instance can be rebuilt from, newest first, each with its
        data loss window (seconds of writes the copy lacks) and the host a rebuild would use."""
        instance = self.get_object()
        if not access.is_admin(request.user):
            raise PermissionDenied("Only administrators can rebuild instances.")
        return Response(hostdown.recovery_overview(instance))

    @extend_schema(request=RebuildSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def rebuild(self, request, pk=None):
        """Rebuild a host-down instance on another host from its newest mirror or backup."""
        instance = self.get_object()
        data = RebuildSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = call_service(
            REBUILD.start,
            user=request.user,
            target=instance,
            source=v.get("source"),
            source_id=v.get("source_id"),
            host=v.get("host"),
        )
        return job_accepted(job, {"instance": int(pk)})
