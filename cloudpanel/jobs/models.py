from django.conf import settings
from django.db import models
from django.db.models import Q


class Job(models.Model):
    """Every long operation: what, on what, who asked, how far, and how it ended."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class TargetType(models.TextChoices):
        INSTANCE = "instance", "Instance"
        IMAGE = "image", "Image"
        HOST = "host", "Host"
        BACKUP = "backup", "Backup"

    ACTIVE = (Status.PENDING, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=32, choices=TargetType.choices, db_index=True)
    target_id = models.BigIntegerField(null=True, blank=True)
    target_name = models.CharField(max_length=255, blank=True)
    # Exclusive jobs change their target: at most one pending or running per target.
    exclusive = models.BooleanField(default=True)
    params = models.JSONField(default=dict, blank=True)
    # A job run as one step of a larger one (an evacuation's migrations): cancelling the
    # parent stops it, and its outcome is part of the parent's result.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    progress = models.PositiveSmallIntegerField(default=0)
    # step, log and error are for admins: they name hosts, pools, paths and libvirt's own
    # messages. Tenants get the public_* text, which holds only what handlers mark public.
    step = models.CharField(max_length=255, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    public_step = models.CharField(max_length=255, blank=True)
    public_log = models.TextField(blank=True)
    public_error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["target_type", "target_id"],
                condition=Q(exclusive=True, status__in=["pending", "running"]),
                name="one_active_exclusive_job_per_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.target_name or self.target_id} [{self.status}]"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None
