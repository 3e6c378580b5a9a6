from rest_framework import serializers

from cloudpanel.fast_serializers import FastReadMixin
from cloudpanel.projects import access

from ..models import Job


class JobTargetSerializer(FastReadMixin, serializers.Serializer):
    type = serializers.CharField(source="target_type")
    id = serializers.IntegerField(source="target_id", allow_null=True)
    name = serializers.CharField(source="target_name")


def viewer(serializer) -> object | None:
    """The user a serializer writes for; without a request, nobody: the tenant's view."""
    request = serializer.context.get("request")
    return getattr(request, "user", None)


class JobSerializer(FastReadMixin, serializers.ModelSerializer):
    """Admins get everything; others the tenant-safe step, log, error and result
    (see cloudpanel.projects.access)."""

    target = JobTargetSerializer(source="*", read_only=True)
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "progress",
            "step",
            "error",
            "target",
            "parent",
            "project",
            "requested_by",
            "result",
            "log",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def to_representation(self, job):
        data = super().to_representation(job)
        user = viewer(self)
        if not access.sees_infrastructure(user):
            data["step"] = access.job_step_for(user, job)
            data["error"] = access.job_error_for(user, job)
            data["log"] = access.job_log_for(user, job)
            data["result"] = access.job_result_for(user, job)
        return data
