from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "cloudpanel.jobs"
    label = "jobs"
