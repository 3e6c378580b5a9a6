from django.urls import path

from . import backup_views, console_views, migration_views, mirror_views, recovery_views, views

app_name = "instances"
urlpatterns = [
    path("", views.instance_list, name="list"),
    path("new/", views.instance_create, name="new"),
    path("adopt/", views.instance_adopt, name="adopt"),
    path("<int:pk>/", views.instance_detail, name="detail"),
    path("<int:pk>/action/<str:action>/", views.instance_action, name="action"),
    path("<int:pk>/resize/", views.instance_resize, name="resize"),
    path("<int:pk>/password/", views.instance_password, name="password"),
    path("<int:pk>/delete/", views.instance_delete, name="delete"),
    path("<int:pk>/console/", console_views.instance_console, name="console"),
    path("<int:pk>/serial/", console_views.instance_serial, name="serial"),
    path("<int:pk>/forget/", views.instance_forget, name="forget"),
    path("<int:pk>/snapshots/", views.snapshot_create, name="snapshot-create"),
    path("<int:pk>/snapshots/<int:sid>/revert/", views.snapshot_revert, name="snapshot-revert"),
    path("<int:pk>/snapshots/<int:sid>/delete/", views.snapshot_delete, name="snapshot-delete"),
    path("flavors/", views.flavor_list, name="flavors"),
    path("keypairs/", views.keypair_list, name="keypairs"),
    path("keypairs/<int:pk>/delete/", views.keypair_delete, name="keypair-delete"),
    path("flavors/<int:pk>/delete/", views.flavor_delete, name="flavor-delete"),
]
# The business-continuity parts of the instance page, one module each.
for _part in (migration_views, mirror_views, backup_views, recovery_views):
    urlpatterns += _part.urlpatterns
