"""Disk mirrors of an instance in the API (admins only): list, start, pivot, stop.

Tenants get what they get for other admin actions: 404 for instances they cannot see, 403
for their own."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from cloudpanel.api import call_service, job_accepted
from cloudpanel.errors import PermissionDenied
from cloudpanel.jobs.api.serializers import JobSerializer
from cloudpanel.projects import access

from ..mirror_events import mirror_list
from ..models import DiskMirror
from ..operations.mirror import MIRROR_PIVOT, MIRROR_START, MIRROR_STOP


class DiskMirrorSerializer(serializers.ModelSerializer):
    disk = serializers.CharField(source="disk_target", read_only=True)
    state_display = serializers.CharField(source="get_state_display", read_only=True)
    pool = serializers.CharField(source="volume.pool", read_only=True, default=None)
    volume_name = serializers.CharField(source="volume.name", read_only=True, default=None)
    path = serializers.CharField(source="volume.path", read_only=True, default=None)
    host = serializers.IntegerField(source="volume.host_id", read_only=True, default=None)

    class Meta:
        model = DiskMirror
        fields = [
            "id",
            "disk",
            "state",
            "state_display",
            "error",
            "volume",
            "pool",
            "volume_name",
            "path",
            "host",
            "job",
            "synced_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MirrorStartSerializer(serializers.Serializer):
    disk = serializers.CharField(default="vda", max_length=16)
    pool = serializers.CharField(max_length=128, help_text="A storage pool of the instance's host.")
    bandwidth_mib = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Limit of the copy in MiB/s (default: none).",
    )


def _require_admin(user) -> None:
    if not access.is_admin(user):
        raise PermissionDenied("Only administrators may mirror disks.")


class MirrorActions:
    """Mixed into instances.api.views.InstanceViewSet."""

    @extend_schema(
        methods=["get"],
        request=None,
        responses=DiskMirrorSerializer(many=True),
        description="The instance's disk mirrors, newest first (admins only). Reading "
        "refreshes active mirrors from libvirt (state, synced_at).",
    )
    @extend_schema(
        methods=["post"],
        request=MirrorStartSerializer,
        responses={202: JobSerializer},
        description="Start mirroring a disk of a running instance into a new volume of a "
        "pool of its host (admins only). The job ends once the copy is in sync; the copy "
        "then stays in sync until pivot or stop.",
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None, filterset_class=None)
    def mirrors(self, request, pk=None):
        instance = self.get_object()
        _require_admin(request.user)
        if request.method == "GET":
            return Response(DiskMirrorSerializer(mirror_list(instance), many=True).data)
        data = MirrorStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = call_service(
            MIRROR_START.start,
            user=request.user,
            target=instance,
            disk=data.validated_data["disk"],
            pool=data.validated_data["pool"],
            bandwidth_mib=data.validated_data.get("bandwidth_mib"),
        )
        return job_accepted(job)

    def _on_mirror(self, operation, mid):
        instance = self.get_object()
        _require_admin(self.request.user)
        mirror = get_object_or_404(DiskMirror, pk=mid, instance=instance)
        job = call_service(operation.start, user=self.request.user, target=instance, mirror=mirror)
        return job_accepted(job, {"mirror": mirror.pk})

    @extend_schema(
        request=None,
        responses={202: JobSerializer},
        description="Switch the instance over to its (in sync) mirror; its old volume is "
        "deleted and the mirror becomes its disk (admins only).",
    )
    @action(detail=True, methods=["post"], url_path=r"mirrors/(?P<mid>[0-9]+)/pivot")
    def mirror_pivot(self, request, pk=None, mid=None):
        return self._on_mirror(MIRROR_PIVOT, mid)

    @extend_schema(
        request=None,
        responses={202: JobSerializer},
        description="Stop mirroring; the copy stays as a standalone disk (state stopped, "
        "synced_at = when it stopped being in sync) (admins only).",
    )
    @action(detail=True, methods=["post"], url_path=r"mirrors/(?P<mid>[0-9]+)/stop")
    def mirror_stop(self, request, pk=None, mid=None):
        return self._on_mirror(MIRROR_STOP, mid)
