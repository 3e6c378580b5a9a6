from django.urls import path

from . import views

app_name = "images"
urlpatterns = [
    path("", views.image_list, name="list"),
    path("upload/", views.image_upload_view, name="upload"),
    path("import/", views.image_import_view, name="import"),
    path("<int:pk>/", views.image_detail, name="detail"),
    path("<int:pk>/mirror/", views.image_mirror_view, name="mirror"),
    path("<int:pk>/delete/", views.image_delete_view, name="delete"),
    path("<int:pk>/distribution/", views.image_distribution_view, name="distribution"),
    path("<int:pk>/distribute/", views.image_distribute_view, name="distribute"),
]
