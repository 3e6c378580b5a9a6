"""InstanceViewSet actions (H4)."""


class MirrorActions:
    """Mixed into instances.api.views.InstanceViewSet."""
