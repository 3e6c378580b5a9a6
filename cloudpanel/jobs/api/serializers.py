from rest_framework import serializers

from ..models import Job


class JobTargetSerializer(serializers.Serializer):
    type = serializers.CharField(source="target_type")
    id = serializers.IntegerField(source="target_id", allow_null=True)
    name = serializers.CharField(source="target_name")


class JobSerializer(serializers.ModelSerializer):
    target = JobTargetSerializer(source="*", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
