"""Backups in the API: on an instance (list, back up, capture as image) and the backups
themselves at /api/v1/backups/ (list, detail, delete, restore as a new instance).

Where a backup is kept (host, pool, volume paths) is for admins only; a tenant sees its
disks by name with their size and sha256."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from cloudpanel.api import ApiContract, call_service, job_accepted
from cloudpanel.jobs.api.serializers import JobSerializer, viewer
from cloudpanel.projects import access
from hosts.models import Host

from ..backups import backup_delete, backup_list
from ..filters import BackupFilter
from ..models import Backup
from ..operations.backup import BACKUP, CAPTURE, RESTORE

FAILED_FOR_TENANTS = "The backup failed; an administrator can see the details."


class BackupDiskSerializer(serializers.Serializer):
    ADMIN_ONLY = ("pool", "name", "path")

    disk = serializers.CharField(source="disk_target")
    format = serializers.CharField()
    capacity_bytes = serializers.IntegerField()
    allocation_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    # Admins only:
    pool = serializers.CharField()
    name = serializers.CharField()
    path = serializers.CharField()


class BackupSerializer(serializers.ModelSerializer):
    ADMIN_ONLY = ("host", "host_name")
    ADMIN_DISK_FIELDS = ("pool", "name", "path")

    host_name = serializers.CharField(source="host.name", read_only=True)
    disks = BackupDiskSerializer(source="volumes", many=True, read_only=True)

    class Meta:
        model = Backup
        fields = [
            "id",
            "name",
            "project",
            "instance",
            "instance_name",
            "flavor",
            "image",
            "host",
            "host_name",
            "method",
            "state",
            "error",
            "size_bytes",
            "sha256",
            "disks",
            "job",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields

    def to_representation(self, backup):
        data = super().to_representation(backup)
        if not access.sees_infrastructure(viewer(self)):
            for name in self.ADMIN_ONLY:
                data.pop(name, None)
            for disk in data["disks"]:
                for name in self.ADMIN_DISK_FIELDS:
                    disk.pop(name, None)
            if data["error"]:
                data["error"] = FAILED_FOR_TENANTS
        return data


class BackupCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    pool = serializers.CharField(max_length=128, required=False, allow_null=True, default=None)


class CaptureSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)


class RestoreSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    host = serializers.IntegerField(required=False, allow_null=True)


class BackupActions:
    """Mixed into instances.api.views.InstanceViewSet."""

    @extend_schema(methods=["get"], request=None, responses=BackupSerializer(many=True))
    @extend_schema(methods=["post"], request=BackupCreateSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=None, filterset_class=None)
    def backups(self, request, pk=None):
        """The instance's backups, newest first (GET); back it up now (POST, members): a
        point-in-time copy of its disks, also while it runs."""
        instance = self.get_object()
        if request.method == "GET":
            rows = backup_list(user=request.user, instance=instance)
            return Response(BackupSerializer(rows, many=True, context={"request": request}).data)
        data = BackupCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = call_service(BACKUP.start, user=request.user, target=instance, **data.validated_data)
        return job_accepted(job)

    @extend_schema(request=CaptureSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def capture(self, request, pk=None):
        """Make a new private image of the project from the instance's root disk (members);
        the job's result names the image."""
        instance = self.get_object()
        data = CaptureSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = call_service(CAPTURE.start, user=request.user, target=instance, **data.validated_data)
        return job_accepted(job)


class BackupViewSet(
    ApiContract, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Backups of the projects the user is in: viewers look, members delete and restore;
    other projects' backups are not found."""

    serializer_class = BackupSerializer
    filterset_class = BackupFilter
    ordering_fields = ["created_at", "name", "state", "id"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self):
        return backup_list(user=self.request.user)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request, pk=None):
        """Delete the backup's copies from the host, then the backup (members)."""
        call_service(backup_delete, user=request.user, backup=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=RestoreSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def restore(self, request, pk=None):
        """Restore the backup as a new instance of its project (members; `host` for
        admins). The job's result carries the new instance's id, also given here."""
        backup = self.get_object()
        data = RestoreSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        host_id = data.validated_data.get("host")
        access.require_host_choice_allowed(request.user, host_id)
        host = None
        if host_id is not None:
            host = Host.objects.filter(pk=host_id).first()
            if host is None:
                raise ValidationError({"host": [f"Unknown host {host_id}."]})
        job = call_service(
            RESTORE.start,
            user=request.user,
            target=backup,
            name=data.validated_data["name"],
            host=host,
        )
        return job_accepted(job, {"instance": job.params.get("instance")})
