def register(router) -> None:
    """Add the instances app's viewsets to the /api/v1/ router."""
    from .keypairs import KeyPairViewSet
    from .views import FlavorViewSet, InstanceViewSet

    router.register("flavors", FlavorViewSet, basename="flavor")
    router.register("instances", InstanceViewSet, basename="instance")
    router.register("keypairs", KeyPairViewSet, basename="keypair")
