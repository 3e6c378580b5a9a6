"""The host list's filters (admins only: the list itself is)."""

import django_filters

from .models import Host


class HostFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    status = django_filters.MultipleChoiceFilter(choices=Host.Status.choices)

    class Meta:
        model = Host
        fields = ["name", "status", "enabled", "maintenance", "transport"]
