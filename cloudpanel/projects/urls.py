from django.urls import path

from . import views

app_name = "projects"
urlpatterns = [
    path("", views.project_list, name="list"),
    path("<int:pk>/", views.project_detail, name="detail"),
    path("<int:pk>/update/", views.project_update, name="update"),
    path("<int:pk>/delete/", views.project_delete, name="delete"),
    path("<int:pk>/members/add/", views.member_add, name="member-add"),
    path("<int:pk>/members/<int:user_id>/role/", views.member_change, name="member-change"),
    path("<int:pk>/members/<int:user_id>/remove/", views.member_remove, name="member-remove"),
    path("<int:pk>/quota/", views.quota_update, name="quota"),
]
