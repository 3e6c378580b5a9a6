from django.contrib import admin

from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Read-only: tokens are made by their users; the digest is never shown."""

    list_display = ["name", "user", "prefix", "project", "read_only", "expires_at",
                    "last_used_at", "revoked_at"]  # fmt: skip
    list_filter = ["read_only"]
    search_fields = ["name", "prefix", "user__username"]
    exclude = ["digest"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
