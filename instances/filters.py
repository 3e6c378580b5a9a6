"""The instance list's filters. Ids are matched, never looked up, so a filter tells a tenant
nothing about objects outside their projects; only admins may filter by host."""

import django_filters

from cloudpanel.filters import IdFilter
from cloudpanel.projects import access

from .models import Instance


class InstanceFilter(django_filters.FilterSet):
    host = IdFilter(method="filter_host")
    project = IdFilter(field_name="project_id")
    flavor = IdFilter(field_name="flavor_id")
    image = IdFilter(field_name="image_id")

    class Meta:
        model = Instance
        fields = ["state", "host", "project", "flavor", "image", "adopted"]

    def filter_host(self, queryset, name, value):
        access.require_host_choice_allowed(getattr(self.request, "user", None), value)
        return queryset.filter(host_id=value)
