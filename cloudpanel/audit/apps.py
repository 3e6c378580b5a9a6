from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "cloudpanel.audit"
    label = "audit"
