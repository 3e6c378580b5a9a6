"""InstanceViewSet actions (H1)."""


class MigrationActions:
    """Mixed into instances.api.views.InstanceViewSet."""
