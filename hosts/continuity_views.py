"""Host page parts (H3): maintenance and evacuation."""

urlpatterns: list = []


def detail_context(request, host) -> dict:
    """What templates/hosts/_continuity.html needs on the host page."""
    return {}
