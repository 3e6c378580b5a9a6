"""The API's permission classes, one per rule; what they decide comes from the access layer
(cloudpanel.projects.access), which the pages and the sockets use too."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from cloudpanel.projects import access


class SignedInReadsAdminWrites(BasePermission):
    """Everyone signed in may read; only admins may write (flavors, projects)."""

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or access.is_admin(request.user)


class AdminOnly(BasePermission):
    """Only admins, for reading too (hosts: their URIs, capacity and errors)."""

    def has_permission(self, request, view):
        return access.is_admin(request.user)
