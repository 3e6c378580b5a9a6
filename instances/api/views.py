from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from cloudpanel.api import ApiContract, call_service, job_accepted
from cloudpanel.errors import HostUnavailable
from cloudpanel.jobs.api.serializers import JobSerializer
from cloudpanel.live import metrics as live_metrics
from cloudpanel.live.api import MetricsQuerySerializer, MetricsSerializer, metrics_response_data
from cloudpanel.pagination import CursorPagination
from cloudpanel.permissions import SignedInReadsAdminWrites
from cloudpanel.projects import access
from cloudpanel.projects.models import Project
from hosts.models import Host
from images.models import Image

from .. import consoles, guest, operations, selectors, services
from ..filters import FlavorFilter, InstanceFilter
from ..models import Flavor, Snapshot
from ..rules import image_visible
from .backups import BackupActions
from .guest import GuestInfoSerializer, SetPasswordSerializer
from .migration import MigrationActions
from .mirrors import MirrorActions
from .recovery import RecoveryActions
from .serializers import (
    AdoptSerializer,
    ConsoleTicketSerializer,
    FlavorSerializer,
    InstanceCreateSerializer,
    InstanceRenameSerializer,
    InstanceSerializer,
    ResizeSerializer,
    ShutdownSerializer,
    SnapshotCreateSerializer,
    SnapshotSerializer,
    UnmanagedDomainSerializer,
)


def _get_or_400(model, pk, field: str, label: str):
    if pk is None:
        return None
    obj = model.objects.filter(pk=pk).first()
    if obj is None:
        raise ValidationError({field: [f"Unknown {label} {pk}."]})
    return obj


class FlavorViewSet(ApiContract, viewsets.ModelViewSet):
    """Instance sizes: members list them, admins manage them."""

    serializer_class = FlavorSerializer
    permission_classes = [SignedInReadsAdminWrites]
    filterset_class = FlavorFilter
    ordering_fields = ["name", "vcpus", "ram_mib", "disk_gib", "id"]
    ordering = ["vcpus", "ram_mib", "name"]

    def get_queryset(self):
        return selectors.flavor_list()

    def perform_create(self, serializer):
        serializer.instance = call_service(services.flavor_create, **serializer.validated_data)

    def perform_update(self, serializer):
        call_service(
            services.flavor_update, flavor=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.flavor_delete(flavor=instance)


class InstanceViewSet(
    ApiContract,
    MigrationActions,
    MirrorActions,
    BackupActions,
    RecoveryActions,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Virtual machines: members act in their projects, viewers look, others see nothing."""

    serializer_class = InstanceSerializer
    filterset_class = InstanceFilter
    pagination_class = CursorPagination
    ordering_fields = ["name", "created_at", "id"]
    ordering = ["name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if self.action == "list":
            return selectors.instance_list_for(self.request.user)
        return selectors.instance_detail_for(self.request.user)

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        context = self.get_serializer_context()
        if access.sees_infrastructure(request.user):
            context["volumes_by_instance"] = selectors.volumes_by_instance(i.pk for i in page)
        data = self.get_serializer_class()(page, many=True, context=context).data
        return self.get_paginated_response(data)

    def _fresh(self, instance):
        return self.get_queryset().get(pk=instance.pk)

    @extend_schema(request=InstanceCreateSerializer, responses={202: JobSerializer})
    def create(self, request):
        """Create an instance (a job; the 202 body's `instance` is the new instance's id)."""
        data = InstanceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        # Before any lookup: an unknown host and a real one get the same answer.
        access.require_host_choice_allowed(request.user, v.get("host"))
        image = _get_or_400(Image, v["image"], "image", "image")
        if image is not None and not image_visible(request.user, image):
            raise ValidationError({"image": [f"Unknown image {v['image']}."]})
        flavor = _get_or_400(Flavor, v["flavor"], "flavor", "flavor")
        host = _get_or_400(Host, v.get("host"), "host", "host")
        project = _get_or_400(Project, v.get("project"), "project", "project")
        if project is not None and not access.can_view(request.user, project):
            raise ValidationError({"project": [f"Unknown project {v['project']}."]})
        job = call_service(
            operations.CREATE.start,
            user=request.user,
            name=v["name"],
            image=image,
            flavor=flavor,
            project=project,
            host=host,
            keypairs=v.get("keypairs"),
            user_data=v.get("user_data"),
            hostname=v.get("hostname"),
            password=v.get("password"),
        )
        return job_accepted(job, {"instance": job.target_id})

    @extend_schema(request=InstanceRenameSerializer, responses=InstanceSerializer)
    def partial_update(self, request, pk=None):
        """Rename the instance (`name` is the only field that changes)."""
        instance = self.get_object()
        # Only a JSON object has keys; anything else (null, a list) the serializer refuses.
        extra = set(request.data) - {"name"} if isinstance(request.data, dict) else set()
        if extra:
            raise ValidationError({key: ["This field cannot be changed."] for key in extra})
        data = InstanceRenameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        call_service(
            services.instance_rename,
            user=request.user,
            instance=instance,
            name=data.validated_data["name"],
        )
        return Response(self.get_serializer(self._fresh(instance)).data)

    @extend_schema(request=None, responses={202: JobSerializer})
    def destroy(self, request, pk=None):
        """Delete the instance, its domain and its disks (a job; members)."""
        job = operations.DELETE.start(user=request.user, target=self.get_object())
        return job_accepted(job, {"instance": int(pk)})

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"])
    def forget(self, request, pk=None):
        """Drop the record of an instance whose host is unreachable (admins)."""
        call_service(services.instance_forget, user=request.user, instance=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _power(self, request, action_name: str, params: dict | None = None):
        job = call_service(
            operations.POWER[action_name].start,
            user=request.user,
            target=self.get_object(),
            **(params or {}),
        )
        return job_accepted(job)

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Power the instance on (members)."""
        return self._power(request, "start")

    @extend_schema(request=ShutdownSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def shutdown(self, request, pk=None):
        """Ask the guest to shut down (ACPI), or stop it after `timeout` (members)."""
        data = ShutdownSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._power(request, "shutdown", dict(data.validated_data))

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Power the instance off at once, like pulling the plug (members)."""
        return self._power(request, "stop")

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def reboot(self, request, pk=None):
        """Ask the guest to reboot (members)."""
        return self._power(request, "reboot")

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def reset(self, request, pk=None):
        """Reset the instance at once, like the reset button (members)."""
        return self._power(request, "reset")

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        """Pause the instance's vCPUs; its memory stays allocated (members)."""
        return self._power(request, "suspend")

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Resume a suspended instance (members)."""
        return self._power(request, "resume")

    @extend_schema(request=ResizeSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def resize(self, request, pk=None):
        """Change the instance's flavor (members; a stopped instance, within quota)."""
        instance = self.get_object()
        data = ResizeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        flavor = _get_or_400(Flavor, data.validated_data["flavor"], "flavor", "flavor")
        job = call_service(
            operations.RESIZE.start, user=request.user, target=instance, flavor=flavor
        )
        return job_accepted(job)

    @extend_schema(request=None, responses=GuestInfoSerializer)
    @action(detail=True, methods=["get"])
    def guest(self, request, pk=None):
        """What the guest agent reports: OS, hostname, filesystems, addresses (viewers).

        A guest without an answering agent is a 200 with agent "unavailable" and the reason.
        """
        view = guest.instance_guest_info(user=request.user, instance=self.get_object())
        return Response(GuestInfoSerializer(view.as_dict()).data)

    @extend_schema(request=SetPasswordSerializer, responses={204: None})
    @action(detail=True, methods=["post"])
    def password(self, request, pk=None):
        """Set a guest user's password through the guest agent, at once (members).

        409 when no guest agent answers; the password is neither stored nor logged.
        """
        instance = self.get_object()
        data = SetPasswordSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        call_service(
            guest.instance_set_password,
            user=request.user,
            instance=instance,
            username=data.validated_data["user"],
            password=data.validated_data["password"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, parameters=[MetricsQuerySerializer], responses=MetricsSerializer)
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        """Recent samples (CPU, memory, disk and network rates), oldest first: the last hour
        at the watcher's interval; the status stream brings the next ones as they come."""
        instance = self.get_object()
        return Response(metrics_response_data(live_metrics.INSTANCE, instance.pk, request.GET))

    @extend_schema(request=None, responses={201: ConsoleTicketSerializer})
    @action(detail=True, methods=["post"])
    def console(self, request, pk=None):
        """A console ticket (members): single use, valid 30 s, for this user and instance.

        Open the WebSocket at `path` within that time; `serial_path` opens the serial
        console with the same ticket instead (one of the two, once).
        """
        ticket = call_service(
            consoles.console_ticket_issue, user=request.user, instance=self.get_object()
        )
        return Response(ConsoleTicketSerializer(ticket).data, status=status.HTTP_201_CREATED)

    @extend_schema(methods=["get"], request=None, responses=SnapshotSerializer(many=True))
    @extend_schema(
        methods=["post"], request=SnapshotCreateSerializer, responses={202: JobSerializer}
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None, filterset_class=None)
    def snapshots(self, request, pk=None):
        """GET: the instance's snapshots (all of them, not paged). POST: take one (a job)."""
        instance = self.get_object()
        if request.method == "GET":
            return Response(SnapshotSerializer(instance.snapshots.all(), many=True).data)
        data = SnapshotCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = call_service(
            operations.TAKE_SNAPSHOT.start,
            user=request.user,
            target=instance,
            name=data.validated_data["name"],
            description=data.validated_data.get("description", ""),
            quiesce=data.validated_data["quiesce"],
        )
        return job_accepted(job)

    def _on_snapshot(self, operation, sid):
        instance = self.get_object()
        snapshot = get_object_or_404(Snapshot, pk=sid, instance=instance)
        job = call_service(
            operation.start, user=self.request.user, target=instance, snapshot=snapshot
        )
        return job_accepted(job, {"snapshot": int(sid)})

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"], url_path=r"snapshots/(?P<sid>[0-9]+)/revert")
    def snapshot_revert(self, request, pk=None, sid=None):
        """Revert the instance to the snapshot (a job; members)."""
        return self._on_snapshot(operations.REVERT_SNAPSHOT, sid)

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["delete"], url_path=r"snapshots/(?P<sid>[0-9]+)")
    def snapshot_delete(self, request, pk=None, sid=None):
        """Delete the snapshot (a job; members)."""
        return self._on_snapshot(operations.DELETE_SNAPSHOT, sid)

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("host", int, required=True, description="The host's id.")],
        responses=UnmanagedDomainSerializer(many=True),
    )
    @action(detail=False, methods=["get"], pagination_class=None, filterset_class=None)
    def unmanaged(self, request):
        """Domains on a host that the panel does not manage (admins only)."""
        if not access.is_admin(request.user):
            raise PermissionDenied("Only administrators may list unmanaged domains.")
        host_id = request.query_params.get("host")
        if not host_id or not str(host_id).isdigit():
            raise ValidationError({"host": ["A host id is required."]})
        host = get_object_or_404(Host, pk=int(host_id))
        if host.status != Host.Status.ONLINE:
            raise HostUnavailable(f"Host {host.name} is {host.status}")
        return Response(selectors.unmanaged_domain_list(host))

    @extend_schema(request=AdoptSerializer, responses={201: InstanceSerializer})
    @action(detail=False, methods=["post"])
    def adopt(self, request):
        """Take an unmanaged domain under management as an instance (admins)."""
        if not access.is_admin(request.user):
            raise PermissionDenied("Only administrators may adopt domains.")
        data = AdoptSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        host = _get_or_400(Host, v["host"], "host", "host")
        project = _get_or_400(Project, v.get("project"), "project", "project")
        instance = call_service(
            services.instance_adopt,
            user=request.user,
            host=host,
            domain_name=v["domain"],
            project=project,
            name=v.get("name", ""),
        )
        return Response(
            self.get_serializer(self._fresh(instance)).data, status=status.HTTP_201_CREATED
        )
