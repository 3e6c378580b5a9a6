"""`Authorization: Bearer <token>` (or `Token <token>`, as older clients send) for the API.

First in DEFAULT_AUTHENTICATION_CLASSES, so that DRF answers a request without valid
credentials with 401 and `WWW-Authenticate: Bearer realm="api"` (the session class has no
such header and would make it a 403). The token is set on the user as `api_token`: the
access layer (cloudpanel.projects.access) narrows what a scoped or read-only token reaches.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS

from cloudpanel.permissions import READ_ONLY_TOKEN

from .tokens import TokenRefused, check_secret

SCHEMES = (b"bearer", b"token")


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in SCHEMES:
            return None  # no token: the session (browser) may still authenticate
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: give the scheme and the token, nothing else."
            )
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        try:
            token = check_secret(secret)
        except TokenRefused as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        if token.read_only and request.method not in SAFE_METHODS:
            # Here too, not only in cloudpanel.permissions.TokenAllowsWrites: a view that
            # sets its own permission classes must not let a read-only token write.
            raise exceptions.PermissionDenied(READ_ONLY_TOKEN)
        user = token.user
        user.api_token = token
        return user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
