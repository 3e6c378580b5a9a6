from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "cloudpanel.audit"
    label = "audit"

    def ready(self):
        from . import signals  # noqa: F401  (sign-ins and lockouts)
