def register(router) -> None:
    """Add the images app's viewsets to the /api/v1/ router."""
    from .views import ImageViewSet

    router.register("images", ImageViewSet, basename="image")
