"""Sign-in throttling and lockout (django-axes), for the login form and the API token.

Two limits, both for AXES_COOLOFF_TIME after the last failure:
- AXES_FAILURE_LIMIT failures for one username from one client address lock that pair:
  guessing one account's password stops;
- LOGIN_ADDRESS_FAILURE_LIMIT failures from one address, whatever the usernames, lock the
  address: spraying many usernames stops.
There is no limit on a username alone: anyone could then lock the admin out from anywhere.
Admins unlock with `manage.py axes_reset_username NAME`, `axes_reset_ip ADDRESS`,
`axes_reset`, or by deleting the access attempts in the Django admin.
"""

from __future__ import annotations

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.db.models import Sum
from django.http import JsonResponse
from django.shortcuts import render
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from cloudpanel.accounts.tokens import LOGIN_TOKEN_NAME, issue_token

# The order of settings.AXES_LOCKOUT_PARAMETERS, which the handler relies on.
LOCKOUT_PARAMETERS = [["username", "ip_address"], ["ip_address"]]


class LoginThrottleHandler(AxesDatabaseHandler):
    """axes' database handler with a second, larger limit per client address."""

    def get_failures(self, request, credentials=None) -> int:
        pair, address = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        if address >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(pair, settings.AXES_FAILURE_LIMIT)  # the whole address is locked out
        return pair

    def reset_user_attempts(self, request, credentials=None) -> int:
        # A successful sign-in forgets that user's failures from that address only: an
        # attacker's own account must not wipe the address's count of sprayed usernames.
        pair = self.filter_user_attempts(request, credentials)[0]
        count, _ = pair.delete()
        return count


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        "Too many failed sign-in attempts. Signing in from your address is locked for "
        f"{minutes} minutes after the last attempt; an administrator can unlock it sooner."
    )


def lockout_response(request, original_response=None, credentials=None):
    """axes' AXES_LOCKOUT_CALLABLE: 429 with Retry-After, JSON under /api/, else the login
    page's layout with the message."""
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"detail": lockout_message()}, status=429)
    else:
        response = render(
            request, "registration/locked_out.html", {"message": lockout_message()}, status=429
        )
    # Every attempt during the lockout starts the cool-off again (axes' default).
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


class ObtainAuthToken(APIView):
    """POST /api/v1/auth/token/ {username, password} -> {"token": ...}: a personal API token
    (cloudpanel.accounts.tokens) named "api login", with the default expiry, shown once.
    The bounded parsers, a rate per client address (scope `auth`), and axes' lockout
    answered as a 429."""

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"
    serializer_class = AuthTokenSerializer

    def post(self, request, *args, **kwargs):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError:
            # axes marks the (DRF) request it saw in authenticate().
            if getattr(request, "axes_locked_out", False):
                return lockout_response(request)
            raise
        issued = issue_token(serializer.validated_data["user"], name=LOGIN_TOKEN_NAME)
        return Response({"token": issued.secret})


obtain_auth_token = ObtainAuthToken.as_view()
