"""InstanceViewSet actions (H5)."""


class BackupActions:
    """Mixed into instances.api.views.InstanceViewSet."""
