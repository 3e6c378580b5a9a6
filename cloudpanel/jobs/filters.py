import django_filters

from cloudpanel.filters import IdFilter

from .models import Job


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Job.Status.choices)
    # Matched, never looked up: another project's id and an unknown one both list nothing.
    project = IdFilter(field_name="project_id")
    # The child jobs of a job that fans out (an evacuation's migrations).
    parent = IdFilter(field_name="parent_id")

    class Meta:
        model = Job
        fields = ["status", "kind", "target_type", "target_id", "project", "parent"]
