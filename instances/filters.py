"""The instance list's filters. Ids are matched, never looked up, so a filter tells a tenant
nothing about objects outside their projects; only admins may filter by host."""

import django_filters

from cloudpanel.filters import IdFilter
from cloudpanel.projects import access

from .models import Backup, Flavor, Instance, KeyPair


class InstanceFilter(django_filters.FilterSet):
    host = IdFilter(method="filter_host")
    project = IdFilter(field_name="project_id")
    flavor = IdFilter(field_name="flavor_id")
    image = IdFilter(field_name="image_id")
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Instance
        fields = ["state", "host", "project", "flavor", "image", "adopted", "name"]

    def filter_host(self, queryset, name, value):
        access.require_host_choice_allowed(getattr(self.request, "user", None), value)
        return queryset.filter(host_id=value)


class FlavorFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Flavor
        fields = ["name", "vcpus", "ram_mib", "disk_gib"]


class KeyPairFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = KeyPair
        fields = ["name"]


class BackupFilter(django_filters.FilterSet):
    """Ids matched, never looked up, as on the instance list."""

    name = django_filters.CharFilter(lookup_expr="icontains")
    state = django_filters.MultipleChoiceFilter(choices=Backup.State.choices)
    project = IdFilter(field_name="project_id")
    instance = IdFilter(field_name="instance_id")

    class Meta:
        model = Backup
        fields = ["name", "state", "method", "project", "instance"]
