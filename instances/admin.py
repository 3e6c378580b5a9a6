from django.contrib import admin

from .models import Flavor, Instance, Snapshot


@admin.register(Flavor)
class FlavorAdmin(admin.ModelAdmin):
    list_display = ["name", "vcpus", "ram_mib", "disk_gib"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "host", "flavor", "state", "adopted"]
    list_filter = ["state", "host", "adopted"]
    search_fields = ["name", "uuid", "domain_name"]
    readonly_fields = ["uuid", "domain_name", "volumes", "current_job"]


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["name", "instance", "domain_state", "created_at"]
