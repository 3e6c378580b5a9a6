from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One state-changing action, from the UI, the API or the system itself. Read-only
    once written; parameters never hold secrets (cloudpanel/audit/services.py strips them)."""

    class Result(models.TextChoices):
        OK = "ok", "Succeeded"
        ACCEPTED = "accepted", "Accepted (a job runs it)"
        FAILED = "failed", "Failed"
        DENIED = "denied", "Denied"

    class Source(models.TextChoices):
        UI = "ui", "Web UI"
        API = "api", "REST API"
        SYSTEM = "system", "System"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip
    username = models.CharField(max_length=150, blank=True)  # kept when the user goes
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64, db_index=True)  # "instance.start", "host.create"
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_name = models.CharField(max_length=255, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.CharField(max_length=12, choices=Result.choices, default=Result.OK)
    message = models.TextField(blank=True)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.SYSTEM)
    client_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["project", "-at"]),
            models.Index(fields=["target_type", "target_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or 'system'} {self.action}"
