"""The projects API's shapes: projects, members, quotas with usage, users (no hashes)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from .models import Membership, Project, Quota
from .quotas import RESOURCES


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_at"]
        read_only_fields = ["created_at"]


class MemberSerializer(serializers.ModelSerializer):
    """A member as listed: the user's id and name, and the role in the project."""

    user = serializers.IntegerField(source="user_id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    role = serializers.ChoiceField(choices=Membership.Role.choices, read_only=True)

    class Meta:
        model = Membership
        fields = ["user", "username", "role"]


class MemberAddSerializer(serializers.Serializer):
    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all())
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class QuotaUsageSerializer(serializers.Serializer):
    used = serializers.IntegerField()
    limit = serializers.IntegerField(allow_null=True, help_text="null: unlimited")


class QuotaSerializer(serializers.Serializer):
    """A project's limits (null: unlimited) and its usage, counted from its rows."""

    project = serializers.IntegerField(read_only=True)
    instances = QuotaUsageSerializer(read_only=True)
    vcpus = QuotaUsageSerializer(read_only=True)
    ram_mib = QuotaUsageSerializer(read_only=True)
    disk_gib = QuotaUsageSerializer(read_only=True)
    snapshots = QuotaUsageSerializer(read_only=True)
    backups = QuotaUsageSerializer(read_only=True)


class QuotaLimitsSerializer(serializers.ModelSerializer):
    """PUT body: every limit (null or absent: unlimited)."""

    class Meta:
        model = Quota
        fields = list(RESOURCES)
        extra_kwargs = {r: {"required": False, "allow_null": True, "min_value": 0}
                        for r in RESOURCES}  # fmt: skip


class UserSerializer(serializers.ModelSerializer):
    """A user as admins see it; the password is write-only and never read back."""

    password = serializers.CharField(
        write_only=True, required=False, style={"input_type": "password"}, trim_whitespace=False
    )
    projects = serializers.SerializerMethodField()

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "first_name", "last_name", "is_staff",
                  "is_active", "date_joined", "last_login", "password", "projects"]  # fmt: skip
        read_only_fields = ["date_joined", "last_login", "is_active"]

    def get_projects(self, user) -> list[dict]:
        return [
            {"project": m.project_id, "name": m.project.name, "role": m.role}
            for m in user.membership_set.all()
        ]


class UserCreateSerializer(UserSerializer):
    password = serializers.CharField(
        write_only=True, style={"input_type": "password"}, trim_whitespace=False
    )


class UserUpdateSerializer(UserSerializer):
    class Meta(UserSerializer.Meta):
        read_only_fields = ["date_joined", "last_login"]
