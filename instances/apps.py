from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"

    def ready(self) -> None:
        from . import hostdown, operations  # noqa: F401 - register the operations, receivers
        from .events import on_instance_changed
        from .signals import instance_changed

        instance_changed.connect(on_instance_changed, dispatch_uid="instances.events.broadcast")
