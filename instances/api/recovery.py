"""InstanceViewSet actions (H3)."""


class RecoveryActions:
    """Mixed into instances.api.views.InstanceViewSet."""
