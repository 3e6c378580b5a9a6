from django.contrib import admin

from .models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "target_type", "target_name", "status", "progress", "created_at"]
    list_filter = ["status", "kind", "target_type"]
    readonly_fields = [f.name for f in Job._meta.fields]
