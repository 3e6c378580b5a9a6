"""Instance page parts (H3): the card on the detail page and its form posts."""

urlpatterns: list = []


def detail_context(request, instance) -> dict:
    """What templates/instances/_recovery.html needs on the instance page."""
    return {}
