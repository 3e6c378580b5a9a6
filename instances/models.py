import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from cloudpanel.projects.models import name_validator


class Flavor(models.Model):
    """A size an instance is created with."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    vcpus = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(256)])
    ram_mib = models.PositiveIntegerField(
        validators=[MinValueValidator(16), MaxValueValidator(4 * 1024 * 1024)]
    )
    disk_gib = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(64 * 1024)]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vcpus", "ram_mib", "disk_gib", "name"]

    def __str__(self) -> str:
        return self.name


class Instance(models.Model):
    """A virtual machine: one libvirt domain on one host."""

    class State(models.TextChoices):
        BUILDING = "building", "Building"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        SHUTOFF = "shutoff", "Shut off"
        CRASHED = "crashed", "Crashed"
        PMSUSPENDED = "pmsuspended", "Suspended (guest)"
        NOSTATE = "nostate", "No state"
        ERROR = "error", "Error"
        MISSING = "missing", "Missing"
        DELETING = "deleting", "Deleting"
        # Its host stayed offline past HOST_DOWN_GRACE_SECONDS: an admin may rebuild it
        # elsewhere from its newest mirror or backup (instances/operations/rebuild.py).
        HOST_DOWN = "host-down", "Host down"

    name = models.CharField(max_length=63, validators=[name_validator])
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(
        "projects.Project", on_delete=models.PROTECT, related_name="instances"
    )
    owner = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="instances"
    )
    flavor = models.ForeignKey(Flavor, on_delete=models.PROTECT, related_name="instances")
    image = models.ForeignKey(
        "images.Image", null=True, blank=True, on_delete=models.PROTECT, related_name="instances"
    )
    host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.PROTECT, related_name="instances"
    )
    domain_name = models.CharField(max_length=128, blank=True)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.BUILDING, db_index=True
    )
    state_reason = models.TextField(blank=True)
    current_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    mac_address = models.CharField(max_length=17, blank=True)
    ip_addresses = models.JSONField(default=list, blank=True)
    adopted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_instance_name")
        ]

    def __str__(self) -> str:
        return self.name


class Snapshot(models.Model):
    """An internal (qcow2) snapshot of an instance, as libvirt confirmed it."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=63, validators=[name_validator])
    description = models.CharField(max_length=255, blank=True)
    # The domain's state when the snapshot was taken (reverting returns to it).
    domain_state = models.CharField(max_length=16, blank=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "name"], name="unique_snapshot_name")
        ]

    def __str__(self) -> str:
        return f"{self.instance}@{self.name}"


class Volume(models.Model):
    """A storage volume on a host that the panel made or manages.

    The row is written before libvirt creates the volume (state `creating`), so a crash in
    between leaves a row to clean up, never an untracked volume; delete and reconcile work
    from these rows.
    """

    class Role(models.TextChoices):
        ROOT = "root", "Root disk"
        CDROM = "cdrom", "CD-ROM"
        DATA = "data", "Data disk"
        MIRROR = "mirror", "Mirror"
        BACKUP = "backup", "Backup"

    class State(models.TextChoices):
        CREATING = "creating", "Being created"
        READY = "ready", "Ready"

    # A host leaves management only without instances: what rows remain go with it.
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="volumes")
    pool = models.CharField(max_length=128)
    name = models.CharField(max_length=255)
    path = models.CharField(max_length=4096, blank=True)
    format = models.CharField(max_length=16, default="qcow2")
    capacity_bytes = models.BigIntegerField(default=0)
    allocation_bytes = models.BigIntegerField(default=0)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ROOT)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CREATING)
    # Null once the instance is gone: the volume is still on the host, and still listed.
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="volumes"
    )
    # A backup's copies (role backup) belong to the backup, which outlives its instance.
    backup = models.ForeignKey(
        "Backup", null=True, blank=True, on_delete=models.SET_NULL, related_name="volumes"
    )
    # The disk it holds, as the domain names it (vda, ...): a mirror's or backup's source.
    disk_target = models.CharField(max_length=16, blank=True)
    # sha256 of the volume's content where the panel computed it (backups).
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["host", "pool", "name"], name="unique_volume_on_host")
        ]

    def __str__(self) -> str:
        return f"{self.pool}/{self.name}"

    def as_dict(self) -> dict:
        """The shape the API has always shown an instance's volumes in."""
        return {"pool": self.pool, "name": self.name, "path": self.path, "role": self.role}


class KeyPair(models.Model):
    """An SSH public key a user imported, to be put in their instances' authorized_keys."""

    owner = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="keypairs")
    name = models.CharField(max_length=63, validators=[name_validator])
    # Normalized: "type base64 [comment]", one line.
    public_key = models.TextField()
    # As `ssh-keygen -lf` prints it: SHA256:<base64 without padding>.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="unique_keypair_name")
        ]

    def __str__(self) -> str:
        return self.name


class DiskMirror(models.Model):
    """A running instance's disk copied continuously (libvirt block copy) to a mirror
    volume: in another pool, or one another host sees too, for disaster recovery."""

    class State(models.TextChoices):
        COPYING = "copying", "Copying"  # the block job runs, not converged yet
        MIRRORED = "mirrored", "Mirrored"  # every guest write reaches both copies
        PIVOTED = "pivoted", "Pivoted"  # the instance now runs on the mirror
        STOPPED = "stopped", "Stopped, copy kept"  # mirroring ended; the copy is a disk
        FAILED = "failed", "Failed"

    ACTIVE = (State.COPYING, State.MIRRORED)

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="mirrors")
    disk_target = models.CharField(max_length=16)  # vda, ...
    volume = models.ForeignKey(
        Volume, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.COPYING)
    error = models.TextField(blank=True)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The newest moment the copy was known to equal the disk: the data loss window of a
    # rebuild from it is the time since then.
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.instance}:{self.disk_target} mirror"


class Backup(models.Model):
    """A point-in-time copy of an instance's disks (one Volume row, role backup, per disk).
    It outlives the instance: a backup can be restored as a new instance."""

    class State(models.TextChoices):
        CREATING = "creating", "Being made"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    class Method(models.TextChoices):
        PUSH = "push", "libvirt backup (push mode)"
        SNAPSHOT_COPY = "snapshot-copy", "external snapshot, copy, block commit"
        OFFLINE_COPY = "offline-copy", "copy of a shut-off disk"

    project = models.ForeignKey("projects.Project", on_delete=models.PROTECT, related_name="+")
    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups"
    )
    instance_name = models.CharField(max_length=63)  # kept once the instance is gone
    # What a restore needs to build a like instance.
    flavor = models.ForeignKey(
        Flavor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    image = models.ForeignKey(
        "images.Image", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=63, blank=True)
    method = models.CharField(max_length=16, choices=Method.choices, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.CREATING)
    error = models.TextField(blank=True)
    size_bytes = models.BigIntegerField(default=0)  # bytes stored, all disks
    sha256 = models.CharField(max_length=64, blank=True)  # of the root disk's copy
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"backup {self.pk} of {self.instance_name}"
