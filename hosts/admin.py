from django.contrib import admin

from .models import Host, HostEvent


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "uri", "status", "enabled", "maintenance", "last_seen_at"]
    exclude = ["ssh_private_key_encrypted"]
    readonly_fields = ["status", "last_error", "last_seen_at", "synced_at", "capabilities"]


@admin.register(HostEvent)
class HostEventAdmin(admin.ModelAdmin):
    list_display = ["host", "at", "from_status", "to_status"]
