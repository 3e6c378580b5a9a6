from django.apps import AppConfig


class ImagesConfig(AppConfig):
    name = "images"

    def ready(self) -> None:
        from . import jobs  # noqa: F401 - registers job handlers
