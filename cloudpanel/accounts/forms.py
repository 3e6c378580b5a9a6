from django import forms

from cloudpanel.projects import access
from cloudpanel.projects.models import Project

from . import tokens


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="What the token is for, e.g. “backup script”.")
    expires_in_days = forms.IntegerField(
        label="Expires in (days)",
        min_value=1,
        max_value=tokens.MAX_DAYS,
        initial=tokens.DEFAULT_DAYS,
        help_text=f"Every token expires; at most {tokens.MAX_DAYS} days.",
    )
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(),
        required=False,
        empty_label="All my projects",
        help_text="A token scoped to one project reaches nothing else.",
    )
    read_only = forms.BooleanField(required=False, help_text="It may read but change nothing.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = _visible_projects(user)


def _visible_projects(user):
    ids = access.visible_project_ids(user)
    projects = Project.objects.order_by("name")
    return projects if ids is None else projects.filter(pk__in=ids)
