"""The API's permission classes, one per rule; what they decide comes from the access layer
(cloudpanel.projects.access), which the pages and the sockets use too."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from cloudpanel.projects import access

READ_ONLY_TOKEN = "This API token is read-only."


def _read_only_token(request) -> bool:
    token = access.token_of(request.user)
    return bool(token is not None and token.read_only)


class TokenAllowsWrites(BasePermission):
    """A read-only token reads only: every unsafe method is a 403, whatever the view.
    In DEFAULT_PERMISSION_CLASSES, and part of the classes below for the views that set
    their own."""

    message = READ_ONLY_TOKEN

    def has_permission(self, request, view):
        return request.method in SAFE_METHODS or not _read_only_token(request)


class SignedInReadsAdminWrites(TokenAllowsWrites):
    """Everyone signed in may read; only admins may write (flavors, projects)."""

    message = None

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        if _read_only_token(request):
            self.message = READ_ONLY_TOKEN
            return False
        return access.is_admin(request.user)


class AdminOnly(TokenAllowsWrites):
    """Only admins, for reading too (hosts: their URIs, capacity and errors)."""

    message = None

    def has_permission(self, request, view):
        if not access.is_admin(request.user):
            return False
        if request.method not in SAFE_METHODS and _read_only_token(request):
            self.message = READ_ONLY_TOKEN
            return False
        return True
