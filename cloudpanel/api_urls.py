"""/api/v1/: one router for every resource; each app registers its own viewsets."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from cloudpanel.accounts.api import ApiTokenViewSet
from cloudpanel.audit.api import AuditEventViewSet
from cloudpanel.auth import obtain_auth_token
from cloudpanel.jobs.api.views import JobViewSet
from cloudpanel.projects.api import ProjectViewSet, UserViewSet
from hosts.api.views import HostViewSet
from images.api.urls import register as register_images
from instances.api.urls import register as register_instances

router = DefaultRouter()
router.register("hosts", HostViewSet, basename="host")
router.register("jobs", JobViewSet, basename="job")
router.register("audit", AuditEventViewSet, basename="audit")
router.register("projects", ProjectViewSet, basename="project")
router.register("users", UserViewSet, basename="user")
router.register("tokens", ApiTokenViewSet, basename="apitoken")
register_images(router)
register_instances(router)

app_name = "api"
urlpatterns = [
    path("auth/token/", obtain_auth_token, name="token"),
    path("", include(router.urls)),
]
