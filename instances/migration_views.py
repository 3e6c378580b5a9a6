"""Instance page parts (H1): the card on the detail page and its form posts."""

urlpatterns: list = []


def detail_context(request, instance) -> dict:
    """What templates/instances/_migration.html needs on the instance page."""
    return {}
