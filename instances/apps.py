from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"

    def ready(self) -> None:
        from . import jobs  # noqa: F401 - registers job handlers
