def register(router) -> None:
    """Add the instances app's viewsets to the /api/v1/ router."""
    from .backups import BackupViewSet
    from .keypairs import KeyPairViewSet
    from .views import FlavorViewSet, InstanceViewSet

    router.register("backups", BackupViewSet, basename="backup")
    router.register("flavors", FlavorViewSet, basename="flavor")
    router.register("instances", InstanceViewSet, basename="instance")
    router.register("keypairs", KeyPairViewSet, basename="keypair")
