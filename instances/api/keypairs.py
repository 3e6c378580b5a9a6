"""/api/v1/keypairs/: each user imports, lists and deletes their own SSH keys; admins see all."""

from rest_framework import mixins, serializers, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from cloudpanel.api import ApiContract, call_service

from .. import keypairs
from ..filters import KeyPairFilter
from ..models import KeyPair


class KeyPairSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = KeyPair
        fields = ["id", "name", "public_key", "fingerprint", "owner", "created_at"]
        read_only_fields = ["id", "fingerprint", "owner", "created_at"]
        # The service checks the name (and its uniqueness per owner) and parses the key.
        extra_kwargs = {"name": {"validators": []}, "public_key": {"trim_whitespace": False}}


class KeyPairViewSet(
    ApiContract,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """SSH public keys for instances: ed25519, ecdsa (P-256/384/521) or RSA of 2048+ bits."""

    serializer_class = KeyPairSerializer
    permission_classes = [IsAuthenticated]
    filterset_class = KeyPairFilter
    ordering_fields = ["name", "created_at", "id"]
    ordering = ["name"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return KeyPair.objects.none()
        return keypairs.keypairs_for(self.request.user)

    def create(self, request, *args, **kwargs):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        keypair = call_service(keypairs.keypair_create, user=request.user, **data.validated_data)
        return Response(self.get_serializer(keypair).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        call_service(keypairs.keypair_delete, user=self.request.user, keypair=instance)
