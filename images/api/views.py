from django.http import UnreadablePostError
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from cloudpanel.api import ApiContract, drf_validation_errors, job_accepted
from cloudpanel.parsers import JSONParser
from cloudpanel.projects.access import is_admin

from ..catalogue import image_delete, image_update
from ..distribution import image_set_distribution
from ..filters import ImageFilter
from ..intake import image_upload
from ..operations import DISTRIBUTE, IMPORT, MIRROR
from ..selectors import image_list_for, image_replica_list
from ..uploads import discard_incomplete_upload, install_image_upload_handler, upload_error
from .serializers import (
    ImageAdminSerializer,
    ImageCreatedSerializer,
    ImageCreateSerializer,
    ImageImportSerializer,
    ImageMirrorSerializer,
    ImageReplicaSerializer,
    ImageSerializer,
    ImageUpdateSerializer,
    ImageUploadSerializer,
)


class ImageViewSet(
    ApiContract,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Disk and installer images: public ones for everybody, project ones for its members."""

    serializer_class = ImageSerializer
    filterset_class = ImageFilter
    ordering_fields = ["name", "created_at", "status", "id"]
    ordering = ["name"]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def initialize_request(self, request, *args, **kwargs):
        # Before anything (authentication's CSRF check included) reads the body.
        if request.method == "POST" and request.content_type == "multipart/form-data":
            install_image_upload_handler(request)
        return super().initialize_request(request, *args, **kwargs)

    def get_queryset(self):
        return image_list_for(self.request.user)

    def retrieve(self, request, *args, **kwargs):
        """The image. `distribution_hosts` and `replicas` (its copies on hosts) are shown to
        administrators only; other users get the list's fields."""
        return Response(self._shown(request, self.get_object()))

    @staticmethod
    def _shown(request, image) -> dict:
        if is_admin(request.user):
            return ImageAdminSerializer(image).data
        return ImageSerializer(image).data

    @extend_schema(
        request={
            "multipart/form-data": ImageUploadSerializer,
            "application/json": ImageImportSerializer,
        },
        responses={
            201: OpenApiResponse(ImageSerializer, description="Uploaded, verified, active."),
            202: OpenApiResponse(ImageCreatedSerializer, description="URL import job started."),
        },
    )
    def create(self, request, *args, **kwargs):
        """Upload an image (multipart `file`) or import one from a URL (JSON `url`, a job)."""
        try:
            data = request.data
        except UnreadablePostError as exc:  # the client went away mid-upload
            discard_incomplete_upload(request._request)
            raise ParseError(f"The upload was interrupted: {exc}") from exc
        serializer = ImageCreateSerializer(data=data, context=self.get_serializer_context())
        error = upload_error(request)
        if error:
            raise ValidationError({"file": [error]})
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        fileobj, url = data.pop("file", None), data.pop("url", None)
        with drf_validation_errors():
            if fileobj is not None:
                image = image_upload(fileobj=fileobj, user=request.user, **data)
                location = reverse("api:image-detail", args=[image.id])
                return Response(
                    ImageSerializer(image).data,
                    status=status.HTTP_201_CREATED,
                    headers={"Location": location},
                )
            job = IMPORT.start(url=url, user=request.user, **data)
        return job_accepted(job, {"image": job.target_id})

    @extend_schema(request=ImageUpdateSerializer, responses=ImageSerializer)
    def partial_update(self, request, *args, **kwargs):
        """Change the image's metadata; administrators also its distribution (where copies
        are kept: none, the distribution_hosts, or all hosts)."""
        image = self.get_object()
        admin_fields = [f for f in ImageUpdateSerializer.ADMIN_FIELDS if f in request.data]
        if admin_fields and not is_admin(request.user):  # before host ids are looked up
            raise PermissionDenied("Only administrators can choose where images are kept.")
        serializer = ImageUpdateSerializer(
            data=request.data, partial=True, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        distribution = fields.pop("distribution", None)
        hosts = fields.pop("distribution_hosts", None)
        with drf_validation_errors():
            if fields:
                image = image_update(image=image, user=request.user, **fields)
            if distribution is not None:
                image = image_set_distribution(
                    user=request.user, image=image, distribution=distribution, hosts=hosts
                )
        return Response(self._shown(request, image))

    def perform_destroy(self, instance):
        image_delete(image=instance, user=self.request.user)

    @extend_schema(request=ImageMirrorSerializer, responses={202: ImageCreatedSerializer})
    @action(detail=True, methods=["post"])
    def mirror(self, request, pk=None):
        """Copy the image into a host's storage pool (a job; a no-op when it is already there)."""
        image = self.get_object()
        if not is_admin(request.user):  # before the host id is looked up: nothing to probe
            raise PermissionDenied("Only administrators can copy images to hosts.")
        serializer = ImageMirrorSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with drf_validation_errors():
            job = MIRROR.start(
                target=image,
                host=serializer.validated_data["host"],
                pool=serializer.validated_data.get("pool"),
                user=request.user,
            )
        return job_accepted(job, {"image": image.id})

    @extend_schema(request=None, responses={202: ImageCreatedSerializer})
    @action(detail=True, methods=["post"])
    def distribute(self, request, pk=None):
        """Copy the image now to every online host its distribution policy names that lacks
        a copy (a job, image.distribute, with one image.mirror child job per host; its result
        lists each host's outcome: copied, present, skipped with the reason, or failed)."""
        image = self.get_object()
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators can copy images to hosts.")
        with drf_validation_errors():
            job = DISTRIBUTE.start(user=request.user, target=image)
        return job_accepted(job, {"image": image.id})

    @extend_schema(request=None, responses=ImageReplicaSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def replicas(self, request, pk=None):
        """Where the image has been copied (administrators only)."""
        image = self.get_object()
        if not is_admin(request.user):
            raise PermissionDenied("Only administrators can see where images are stored.")
        return Response(ImageReplicaSerializer(image_replica_list(image), many=True).data)
