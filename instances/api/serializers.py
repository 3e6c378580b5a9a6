from rest_framework import serializers

from cloudpanel.fast_serializers import FastReadMixin
from cloudpanel.jobs.api.serializers import JobSerializer, viewer
from cloudpanel.projects import access

from ..models import Flavor, Instance, Snapshot


class FlavorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Flavor
        fields = ["id", "name", "vcpus", "ram_mib", "disk_gib", "created_at"]
        read_only_fields = ["id", "created_at"]


class InstanceSerializer(FastReadMixin, serializers.ModelSerializer):
    """Where an instance runs (host, its name, volumes and their paths, the libvirt domain)
    is for admins only; everyone gets `host_key`, an opaque value equal for two instances of
    a project on the same host (cloudpanel.projects.access.host_key)."""

    ADMIN_ONLY = ("host", "host_name", "domain_name", "volumes")

    # A nested field, not a method building a JobSerializer per row: its fields are made once.
    job = JobSerializer(source="current_job", read_only=True, allow_null=True)
    host_key = serializers.SerializerMethodField()
    # Names of related rows: annotations of the instances' selectors, no related row built.
    host_name = serializers.CharField(read_only=True, allow_null=True)
    flavor_name = serializers.CharField(read_only=True)
    image_name = serializers.CharField(read_only=True, allow_null=True)
    project_name = serializers.CharField(read_only=True)
    owner = serializers.CharField(source="owner_name", read_only=True, allow_null=True)
    volumes = serializers.SerializerMethodField()

    class Meta:
        model = Instance
        fields = [
            "id",
            "uuid",
            "name",
            "state",
            "state_reason",
            "host",
            "host_name",
            "host_key",
            "flavor",
            "flavor_name",
            "image",
            "image_name",
            "job",
            "project",
            "project_name",
            "owner",
            "ip_addresses",
            "mac_address",
            "domain_name",
            "volumes",
            "adopted",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance):
        # Dropped here, not in get_fields, so the OpenAPI schema still documents them.
        data = super().to_representation(instance)
        user = viewer(self)
        if not access.sees_infrastructure(user):
            for name in self.ADMIN_ONLY:
                data.pop(name, None)
            data["state_reason"] = access.instance_reason_for(user, instance)
        return data

    def get_volumes(self, obj) -> list[dict]:
        # Admins only (to_representation drops it for others, who get no query for it). A
        # list passes the page's volumes in its context (one query for the page).
        if not self.__dict__.setdefault("_sees_volumes", access.sees_infrastructure(viewer(self))):
            return []
        page_volumes = self.__dict__.setdefault(
            "_page_volumes", self.context.get("volumes_by_instance")
        )
        if page_volumes is not None:
            return page_volumes.get(obj.pk, [])
        return [volume.as_dict() for volume in obj.volumes.all()]

    def get_host_key(self, obj) -> str:
        # One HMAC per (host, project) of a list, not one per row.
        keys = self.__dict__.setdefault("_host_keys", {})
        pair = (obj.host_id, obj.project_id)
        if pair not in keys:
            keys[pair] = access.host_key(*pair)
        return keys[pair]


class InstanceCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    image = serializers.IntegerField()
    flavor = serializers.IntegerField()
    host = serializers.IntegerField(required=False, allow_null=True)
    project = serializers.IntegerField(required=False, allow_null=True)
    # The guest's identity (a NoCloud seed); each checked by the Create operation.
    keypairs = serializers.ListField(
        child=serializers.IntegerField(), required=False, allow_null=True, max_length=100
    )
    user_data = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, trim_whitespace=False
    )
    hostname = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=False,
        write_only=True,
        style={"input_type": "password"},
    )


class InstanceRenameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)


class ShutdownSerializer(serializers.Serializer):
    force_after = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class ResizeSerializer(serializers.Serializer):
    flavor = serializers.IntegerField()


class ConsoleTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Single use; expires after `expires_in` seconds.")
    path = serializers.CharField(help_text="The VNC console's WebSocket path, with the ticket.")
    serial_path = serializers.CharField(help_text="The serial console's WebSocket path.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")


class SnapshotSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Snapshot
        fields = [
            "id",
            "instance",
            "name",
            "description",
            "domain_state",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class SnapshotCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    quiesce = serializers.BooleanField(
        default=False, help_text="Freeze the guest's filesystems (needs its guest agent)"
    )


class AdoptSerializer(serializers.Serializer):
    host = serializers.IntegerField()
    domain = serializers.CharField(max_length=255)
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    project = serializers.IntegerField(required=False, allow_null=True)


class UnmanagedDomainSerializer(serializers.Serializer):
    """A domain on a host that no instance is (selectors.unmanaged_domain_list)."""

    name = serializers.CharField()
    uuid = serializers.CharField()
    state = serializers.CharField()
    vcpus = serializers.IntegerField()
    memory_bytes = serializers.IntegerField()
    persistent = serializers.BooleanField()
    host = serializers.IntegerField()
    host_name = serializers.CharField()
    leftover_of = serializers.IntegerField(
        required=False, help_text="Leftovers only: the instance (now elsewhere) it was."
    )
    leftover_of_name = serializers.CharField(required=False)
    instance_host = serializers.CharField(required=False)
