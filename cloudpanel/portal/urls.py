from django.urls import path

from . import views

# Not namespaced: pages of the console link the portal as {% url 'portal' %}.
urlpatterns = [
    path("", views.overview, name="portal"),
    path("project/", views.switch_project, name="portal-project"),
    path("new/", views.instance_create, name="portal-new"),
    path("instances/<int:pk>/", views.instance_detail, name="portal-instance"),
    path("instances/<int:pk>/power/<str:action>/", views.instance_power, name="portal-power"),
    path("instances/<int:pk>/delete/", views.instance_delete, name="portal-delete"),
    path("instances/<int:pk>/snapshots/", views.snapshot_create, name="portal-snapshot"),
    path(
        "instances/<int:pk>/snapshots/<int:sid>/<str:verb>/",
        views.snapshot_change,
        name="portal-snapshot-change",
    ),
    path("instances/<int:pk>/backups/", views.backup_create, name="portal-backup"),
    path(
        "instances/<int:pk>/backups/<int:bid>/restore/",
        views.backup_restore,
        name="portal-backup-restore",
    ),
    path(
        "instances/<int:pk>/backups/<int:bid>/delete/",
        views.backup_remove,
        name="portal-backup-delete",
    ),
]
