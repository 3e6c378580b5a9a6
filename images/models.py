from django.core.validators import RegexValidator
from django.db import models

from cloudpanel.projects.models import name_validator

# What cloud-init's default user may be called (useradd's rules, as Debian applies them).
default_user_validator = RegexValidator(
    r"^[a-z_][a-z0-9_-]{0,31}$",
    "A user name is 1-32 lower-case letters, digits, '_' or '-', not starting with a digit or '-'.",
)


class Image(models.Model):
    """A disk or installer image kept in the panel's image store and replicated to hosts."""

    class Format(models.TextChoices):
        QCOW2 = "qcow2", "qcow2"
        RAW = "raw", "raw"
        ISO = "iso", "ISO"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        IMPORTING = "importing", "Importing"
        ACTIVE = "active", "Active"
        ERROR = "error", "Error"

    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public"
        PROJECT = "project", "Project"

    class OSFamily(models.TextChoices):
        LINUX = "linux", "Linux"
        WINDOWS = "windows", "Windows"
        BSD = "bsd", "BSD"
        OTHER = "other", "Other"

    class Firmware(models.TextChoices):
        BIOS = "bios", "BIOS"
        UEFI = "uefi", "UEFI"

    class DiskBus(models.TextChoices):
        VIRTIO = "virtio", "virtio"
        SATA = "sata", "SATA"
        SCSI = "scsi", "SCSI (virtio-scsi)"

    name = models.CharField(max_length=63, validators=[name_validator])
    disk_format = models.CharField(max_length=8, choices=Format.choices)
    # The OS family ("OS family" in the UI; the field keeps its first name for the API).
    os_type = models.CharField(
        "OS family", max_length=32, choices=OSFamily.choices, default=OSFamily.LINUX
    )
    # How an instance of it is booted and handed its identity.
    cloud_init = models.BooleanField(
        default=False, help_text="The guest runs cloud-init and reads the panel's NoCloud seed."
    )
    default_user = models.CharField(
        max_length=32,
        blank=True,
        validators=[default_user_validator],
        help_text="The account cloud-init gives the keys and password to (e.g. debian).",
    )
    firmware = models.CharField(max_length=8, choices=Firmware.choices, default=Firmware.BIOS)
    disk_bus = models.CharField(max_length=8, choices=DiskBus.choices, default=DiskBus.VIRTIO)
    min_disk_gib = models.PositiveIntegerField(default=0)
    min_ram_mib = models.PositiveIntegerField(default=0)
    file_size = models.BigIntegerField(null=True, blank=True)
    virtual_size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    visibility = models.CharField(
        max_length=8, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    project = models.ForeignKey("projects.Project", on_delete=models.PROTECT, related_name="images")
    owner = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    error = models.TextField(blank=True)
    # Checked by images.fetch.parse_url, the parser the download itself uses; Django's
    # URLValidator would read it differently (and refuse single-label names like 'mirror').
    source_url = models.CharField(max_length=1000, blank=True)
    # Path of the file relative to settings.IMAGE_STORE.
    file = models.CharField(max_length=255, blank=True)

    # Where copies are kept ahead of need (images/distribution.py): nowhere, on the hosts
    # listed, or on every host (including those that join later).
    class Distribution(models.TextChoices):
        NONE = "none", "On demand"
        HOSTS = "hosts", "On chosen hosts"
        ALL = "all", "On all hosts"

    distribution = models.CharField(
        max_length=8, choices=Distribution.choices, default=Distribution.NONE
    )
    distribution_hosts = models.ManyToManyField("hosts.Host", blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class ImageReplica(models.Model):
    """A copy of an image as a storage volume in a host's pool."""

    class Status(models.TextChoices):
        COPYING = "copying", "Copying"
        ACTIVE = "active", "Active"
        ERROR = "error", "Error"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="replicas")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="replicas")
    pool = models.CharField(max_length=128)
    volume = models.CharField(max_length=255)
    path = models.CharField(max_length=1000, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COPYING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "host", "pool"], name="one_replica_per_pool")
        ]

    def __str__(self) -> str:
        return f"{self.image} on {self.host}/{self.pool}"
