from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from cloudpanel.api import ApiContract
from cloudpanel.pagination import CursorPagination
from cloudpanel.projects.access import can_cancel_job

from .. import services
from ..filters import JobFilter
from ..selectors import job_list_for
from .serializers import JobSerializer


class JobViewSet(
    ApiContract, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = JobSerializer
    filterset_class = JobFilter
    pagination_class = CursorPagination
    ordering_fields = ["created_at", "finished_at", "kind", "status", "id"]
    ordering = ["-created_at"]

    def get_queryset(self):
        return job_list_for(self.request.user)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Ask a pending or running job to stop (its requester, or an admin)."""
        job = self.get_object()
        if not can_cancel_job(request.user, job):
            raise PermissionDenied("You may not cancel this job.")
        job = services.job_cancel(job=job)
        return Response(self.get_serializer(job).data)
