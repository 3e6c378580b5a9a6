"""One FilterSet for the image list, shared by the API and the page.

The project id is matched, never looked up, so an unknown project and another project's
answer alike (an empty list), as on the instance list."""

import django_filters

from cloudpanel.filters import IdFilter

from .models import Image


class ImageFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Image.Status.choices)
    disk_format = django_filters.MultipleChoiceFilter(choices=Image.Format.choices)
    visibility = django_filters.ChoiceFilter(choices=Image.Visibility.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")
    project = IdFilter(field_name="project_id")

    class Meta:
        model = Image
        fields = ["status", "disk_format", "visibility", "project", "os_type", "name"]
