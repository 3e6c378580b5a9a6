from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cloudpanel.projects.access import visible_project_ids
from cloudpanel.projects.models import Project
from hosts.models import Host

from ..fetch import MAX_URL_LENGTH, RefusedURL, parse_url
from ..models import Image, ImageReplica, default_user_validator

SHA256_FIELD = dict(
    required=False,
    allow_blank=True,
    max_length=64,
    help_text="Expected sha256 (hex); the upload or import fails when the file differs.",
)


class ImageSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    project_name = serializers.CharField(source="project.name", read_only=True)

    class Meta:
        model = Image
        fields = [
            "id",
            "name",
            "disk_format",
            "os_type",
            "min_disk_gib",
            "min_ram_mib",
            "cloud_init",
            "default_user",
            "firmware",
            "disk_bus",
            "file_size",
            "virtual_size",
            "sha256",
            "visibility",
            "project",
            "project_name",
            "owner",
            "status",
            "error",
            "source_url",
            "distribution",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def _strict_url(value: str) -> None:
    """The same strict parser the download uses (no URLField: it parses differently)."""
    try:
        parse_url(value)
    except RefusedURL as exc:
        raise serializers.ValidationError(str(exc)) from None


def _url_field(**kwargs) -> serializers.CharField:
    # Kept as given (no trimming), so what is checked is exactly what is sent.
    return serializers.CharField(
        max_length=MAX_URL_LENGTH, trim_whitespace=False, validators=[_strict_url], **kwargs
    )


@extend_schema_field(OpenApiTypes.INT)  # a project's id (the schema cannot tell without a model)
class _ProjectField(serializers.PrimaryKeyRelatedField):
    """Only projects the user sees: another project's id is 'does not exist', not 403."""

    def get_queryset(self):
        request = self.context.get("request")
        ids = visible_project_ids(request.user if request else None)
        qs = Project.objects.all()
        return qs if ids is None else qs.filter(id__in=ids)


class _GuestMetaFields(serializers.Serializer):
    """What an image tells the panel about the guest in it (all optional)."""

    os_type = serializers.ChoiceField(
        choices=Image.OSFamily.choices, required=False, help_text="The OS family."
    )
    min_disk_gib = serializers.IntegerField(min_value=0, required=False)
    min_ram_mib = serializers.IntegerField(min_value=0, required=False)
    cloud_init = serializers.BooleanField(
        required=False, help_text="The guest runs cloud-init (it gets a NoCloud seed)."
    )
    default_user = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        validators=[default_user_validator],
        help_text="The account cloud-init gives keys and the password to, e.g. debian.",
    )
    firmware = serializers.ChoiceField(choices=Image.Firmware.choices, required=False)
    disk_bus = serializers.ChoiceField(choices=Image.DiskBus.choices, required=False)


class _ImageMetaSerializer(_GuestMetaFields):
    name = serializers.CharField(max_length=63)
    disk_format = serializers.ChoiceField(choices=Image.Format.choices)
    visibility = serializers.ChoiceField(choices=Image.Visibility.choices, required=False)
    project = _ProjectField(required=False)
    sha256 = serializers.CharField(**SHA256_FIELD)


class ImageUploadSerializer(_ImageMetaSerializer):
    """multipart/form-data: the image file itself."""

    file = serializers.FileField(allow_empty_file=False, use_url=False)


class ImageImportSerializer(_ImageMetaSerializer):
    """application/json: the image is downloaded from `url` by a job."""

    url = _url_field()


class ImageCreateSerializer(_ImageMetaSerializer):
    """Either a `file` (multipart) or a `url` (JSON), never both."""

    file = serializers.FileField(required=False, allow_empty_file=False, use_url=False)
    url = _url_field(required=False)

    def validate(self, attrs):
        if bool(attrs.get("file")) == bool(attrs.get("url")):
            raise serializers.ValidationError(
                {"file": "Send either a file (multipart) or a url (JSON), not both or neither."}
            )
        return attrs


class ImageUpdateSerializer(_GuestMetaFields):
    name = serializers.CharField(max_length=63, required=False)
    visibility = serializers.ChoiceField(choices=Image.Visibility.choices, required=False)
    project = _ProjectField(required=False)
    # Administrators only (a tenant sending either gets 403).
    distribution = serializers.ChoiceField(
        choices=Image.Distribution.choices,
        required=False,
        help_text="Administrators: where copies are kept ahead of need. 'none': copied to a "
        "host when an instance needs it there; 'hosts': on the distribution_hosts; 'all': on "
        "every host, also those that join later. Copies are made by image.distribute jobs "
        "(POST .../distribute/, and every 10 minutes for hosts that lack one).",
    )
    distribution_hosts = serializers.PrimaryKeyRelatedField(
        queryset=Host.objects.all(),
        many=True,
        required=False,
        help_text="Administrators: host ids, with distribution 'hosts' (sending distribution "
        "other than 'hosts' clears them).",
    )

    ADMIN_FIELDS = ("distribution", "distribution_hosts")

    def validate(self, attrs):
        if "distribution_hosts" in attrs and "distribution" not in attrs:
            attrs["distribution"] = Image.Distribution.HOSTS
        return attrs


class ImageMirrorSerializer(serializers.Serializer):
    host = serializers.PrimaryKeyRelatedField(queryset=Host.objects.all())
    pool = serializers.CharField(
        max_length=128, required=False, help_text="Default: the host's default pool."
    )


class ImageReplicaSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = ImageReplica
        fields = [
            "id",
            "host",
            "host_name",
            "pool",
            "volume",
            "path",
            "sha256",
            "status",
            "error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ImageCreatedSerializer(serializers.Serializer):
    """The 202 answer to a URL import: the job, plus the new image's id."""

    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    step = serializers.CharField()
    error = serializers.CharField()
    target = serializers.DictField()
    image = serializers.IntegerField()


class ImageAdminSerializer(ImageSerializer):
    """What administrators read of an image: also where it is kept and its copies."""

    distribution_hosts = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    replicas = serializers.SerializerMethodField(
        help_text="The image's copies on hosts (as GET .../replicas/ lists them)."
    )

    class Meta(ImageSerializer.Meta):
        fields = [*ImageSerializer.Meta.fields, "distribution_hosts", "replicas"]
        read_only_fields = fields

    @extend_schema_field(ImageReplicaSerializer(many=True))
    def get_replicas(self, image) -> list:
        rows = image.replicas.select_related("host").order_by("host__name", "pool")
        return ImageReplicaSerializer(rows, many=True).data
