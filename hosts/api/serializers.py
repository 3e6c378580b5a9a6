from rest_framework import serializers

from ..models import Host
from ..selectors import host_capacity


class HostSerializer(serializers.ModelSerializer):
    ssh_private_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Private key for qemu+ssh hosts; stored encrypted and never returned.",
    )
    has_ssh_key = serializers.BooleanField(read_only=True)
    capacity = serializers.SerializerMethodField()
    capabilities = serializers.JSONField(read_only=True)
    kvm = serializers.BooleanField(read_only=True)
    domain_type = serializers.CharField(read_only=True)

    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "uri",
            "transport",
            "console_address",
            "default_pool",
            "default_network",
            "ssh_private_key",
            "has_ssh_key",
            "cpu_allocation_ratio",
            "ram_allocation_ratio",
            "disk_allocation_ratio",
            "enabled",
            "maintenance",
            "status",
            "last_error",
            "last_seen_at",
            "synced_at",
            "kvm",
            "domain_type",
            "capabilities",
            "capacity",
            "storage_pools",
            "networks",
            "created_at",
        ]
        read_only_fields = [
            "transport",
            "status",
            "last_error",
            "last_seen_at",
            "synced_at",
            "storage_pools",
            "networks",
            "created_at",
        ]

    def get_capacity(self, host) -> dict:
        return host_capacity(host).as_dict()
