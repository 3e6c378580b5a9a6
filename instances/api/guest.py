"""Serializers of the guest agent's endpoints: GET .../guest/ and POST .../password/."""

from rest_framework import serializers

from ..guest import ANSWERS, PASSWORD_MAX, UNAVAILABLE, USERNAME_MAX


class GuestFilesystemSerializer(serializers.Serializer):
    mountpoint = serializers.CharField()
    name = serializers.CharField()
    type = serializers.CharField()
    used_bytes = serializers.IntegerField(allow_null=True)
    total_bytes = serializers.IntegerField(allow_null=True)


class GuestInterfaceSerializer(serializers.Serializer):
    name = serializers.CharField()
    mac = serializers.CharField(allow_null=True)
    addresses = serializers.ListField(child=serializers.CharField(), help_text="addr/prefix")


class GuestInfoSerializer(serializers.Serializer):
    """What the guest agent reports; with agent 'unavailable', only the reason."""

    agent = serializers.ChoiceField(choices=[ANSWERS, UNAVAILABLE])
    reason = serializers.CharField(help_text="Why the agent is unavailable (empty if it answers)")
    os_name = serializers.CharField(allow_null=True)
    os_version = serializers.CharField(allow_null=True)
    kernel_release = serializers.CharField(allow_null=True)
    hostname = serializers.CharField(allow_null=True)
    timezone = serializers.CharField(allow_null=True)
    filesystems = GuestFilesystemSerializer(many=True)
    interfaces = GuestInterfaceSerializer(many=True)
    ip_addresses = serializers.ListField(child=serializers.CharField())


class SetPasswordSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=USERNAME_MAX)
    # Never echoed back: write-only, and trimmed of nothing (spaces may be meant).
    password = serializers.CharField(
        max_length=PASSWORD_MAX, write_only=True, trim_whitespace=False
    )
