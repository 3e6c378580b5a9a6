from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

DEFAULT_PROJECT_NAME = "default"

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
    "Use 1-63 letters, digits, '.', '-' or '_', starting with a letter or digit.",
)


class Project(models.Model):
    """A tenant: owns instances, images and jobs. Quotas and the portal grow from here."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        # Manages the project's members and everything in it.
        MANAGER = "manager", "Project manager"
        # Creates and runs instances, snapshots, backups, consoles.
        MEMBER = "member", "Member"
        VIEWER = "viewer", "Viewer"  # reads only

    project = models.ForeignKey(Project, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="unique_project_member")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Quota(models.Model):
    """A project's limits; null is unlimited. Usage is counted from the rows themselves
    (cloudpanel/projects/quotas.py), never kept as a counter that could drift."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="quota")
    instances = models.PositiveIntegerField(null=True, blank=True)
    vcpus = models.PositiveIntegerField(null=True, blank=True)
    ram_mib = models.PositiveIntegerField(null=True, blank=True)
    disk_gib = models.PositiveIntegerField(null=True, blank=True)
    snapshots = models.PositiveIntegerField(null=True, blank=True)
    backups = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    RESOURCES = ("instances", "vcpus", "ram_mib", "disk_gib", "snapshots", "backups")

    def __str__(self) -> str:
        return f"quota of {self.project}"
