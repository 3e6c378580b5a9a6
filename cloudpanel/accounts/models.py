from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A personal API token. The secret is shown once; only its sha256 is stored (it is
    random and long, so a plain hash is enough), looked up by its public prefix."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=63)
    prefix = models.CharField(max_length=16, unique=True)  # the token's first characters
    digest = models.CharField(max_length=64)  # sha256 hex of the whole token
    # Reaches only this project's objects (and is never admin) when set.
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    read_only = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"
