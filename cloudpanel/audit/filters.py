import django_filters

from cloudpanel.filters import IdFilter

from .models import AuditEvent


class AuditEventFilter(django_filters.FilterSet):
    """The audit's filters, shared by the API, its export and the page."""

    # Matched, never looked up: another project's id and an unknown one both list nothing.
    user = IdFilter(field_name="user_id")
    project = IdFilter(field_name="project_id")
    job = IdFilter(field_name="job_id")
    username = django_filters.CharFilter()
    action = django_filters.CharFilter()
    action_prefix = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    target_type = django_filters.CharFilter()
    target_id = django_filters.CharFilter()
    result = django_filters.MultipleChoiceFilter(choices=AuditEvent.Result.choices)
    source = django_filters.MultipleChoiceFilter(choices=AuditEvent.Source.choices)
    # ISO date-times (or dates), both ends included.
    at_after = django_filters.DateTimeFilter(field_name="at", lookup_expr="gte")
    at_before = django_filters.DateTimeFilter(field_name="at", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = [
            "user", "username", "project", "job", "action", "action_prefix", "target_type",
            "target_id", "result", "source", "at_after", "at_before",
        ]  # fmt: skip
