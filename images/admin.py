from django.contrib import admin

from .models import Image, ImageReplica


class ImageReplicaInline(admin.TabularInline):
    model = ImageReplica
    extra = 0
    readonly_fields = ["host", "pool", "volume", "path", "sha256", "status", "error", "updated_at"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["name", "disk_format", "status", "visibility", "project", "file_size"]
    list_filter = ["status", "disk_format", "visibility"]
    search_fields = ["name", "sha256"]
    readonly_fields = ["file", "file_size", "virtual_size", "sha256", "status", "error"]
    inlines = [ImageReplicaInline]
