"""The projects and users lists' filters."""

from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model

from .models import Project


class ProjectFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ["name"]


class UserFilter(django_filters.FilterSet):
    username = django_filters.CharFilter(lookup_expr="icontains")
    is_active = django_filters.BooleanFilter()
    is_staff = django_filters.BooleanFilter()

    class Meta:
        model = get_user_model()
        fields = ["username", "is_active", "is_staff"]
