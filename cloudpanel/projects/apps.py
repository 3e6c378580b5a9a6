from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "cloudpanel.projects"
    label = "projects"
