from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import health, views
from .live import prometheus

urlpatterns = [
    path("", views.overview, name="overview"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", prometheus.metrics_view, name="metrics"),
    path("hosts/", include("hosts.urls")),
    path("images/", include("images.urls")),
    path("instances/", include("instances.urls")),
    path("jobs/", include("cloudpanel.jobs.urls")),
    path("audit/", include("cloudpanel.audit.urls")),
    path("projects/", include("cloudpanel.projects.urls")),
    path("account/", include("cloudpanel.accounts.urls")),
    path("portal/", include("cloudpanel.portal.urls")),
    path("api/v1/", include("cloudpanel.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("django-admin/", admin.site.urls),
]

handler400 = views.bad_request
handler403 = views.permission_denied
handler404 = views.page_not_found
handler500 = views.server_error
