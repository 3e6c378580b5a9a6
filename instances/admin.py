from django.contrib import admin

from .models import Flavor, Instance, Snapshot, Volume


@admin.register(Flavor)
class FlavorAdmin(admin.ModelAdmin):
    list_display = ["name", "vcpus", "ram_mib", "disk_gib"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "host", "flavor", "state", "adopted"]
    list_filter = ["state", "host", "adopted"]
    search_fields = ["name", "uuid", "domain_name"]
    readonly_fields = ["uuid", "domain_name", "current_job"]


@admin.register(Volume)
class VolumeAdmin(admin.ModelAdmin):
    list_display = ["name", "pool", "host", "role", "state", "instance"]
    list_filter = ["role", "state", "host"]
    search_fields = ["name", "path"]


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["name", "instance", "domain_state", "created_at"]
