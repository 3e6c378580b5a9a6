"""HostViewSet actions: maintenance, evacuate (H3)."""


class HostContinuityActions:
    """Mixed into hosts.api.views.HostViewSet."""
