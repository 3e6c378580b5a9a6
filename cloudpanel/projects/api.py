from django.db.models import ProtectedError
from rest_framework import serializers, viewsets

from cloudpanel.errors import Conflict
from cloudpanel.permissions import SignedInReadsAdminWrites

from .access import visible_project_ids
from .models import Project


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_at"]
        read_only_fields = ["created_at"]


class ProjectViewSet(viewsets.ModelViewSet):
    serializer_class = ProjectSerializer
    permission_classes = [SignedInReadsAdminWrites]

    def get_queryset(self):
        ids = visible_project_ids(self.request.user)
        qs = Project.objects.all()
        return qs if ids is None else qs.filter(id__in=ids)

    def perform_destroy(self, instance):
        try:
            instance.delete()
        except ProtectedError:
            # Instances and images keep their project (PROTECT): say so, not a 500.
            raise Conflict(
                f"Project {instance.name} still has instances or images; delete them first."
            ) from None
