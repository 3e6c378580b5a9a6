from django.apps import AppConfig


class ImagesConfig(AppConfig):
    name = "images"

    def ready(self) -> None:
        from hosts.signals import host_changed

        from . import operations  # noqa: F401 - registers the operations
        from .distribution import on_host_changed

        # A host that joins or comes back online gets the images kept on it.
        host_changed.connect(on_host_changed, dispatch_uid="images.distribution.host_changed")
