from cloudpanel.projects.access import scope_to_user

from .models import Job


def job_list_for(user):
    return scope_to_user(Job.objects.select_related("requested_by", "project"), user)
