from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "hosts"

    def ready(self) -> None:
        from . import operations  # noqa: F401 - registers host.evacuate
        from .events import on_host_changed
        from .signals import host_changed

        host_changed.connect(on_host_changed, dispatch_uid="hosts.events.broadcast")
