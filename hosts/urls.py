from django.urls import path

from . import continuity_views, views

app_name = "hosts"
urlpatterns = [
    path("", views.host_list, name="list"),
    path("new/", views.host_new, name="new"),
    path("<int:pk>/", views.host_detail, name="detail"),
    path("<int:pk>/refresh/", views.host_refresh, name="refresh"),
    path("<int:pk>/delete/", views.host_delete, name="delete"),
]
urlpatterns += continuity_views.urlpatterns
