from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"

    def ready(self) -> None:
        from . import operations  # noqa: F401 - registers the operations
        from .events import on_instance_changed
        from .signals import instance_changed

        instance_changed.connect(on_instance_changed, dispatch_uid="instances.events.broadcast")
