"""Middleware of our own: Django's APPEND_SLASH without its trap for API writes."""

from django.middleware import common

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class CommonMiddleware(common.CommonMiddleware):
    """Django's, except that a write to an API path without its trailing slash is not
    redirected: a client would replay it as a GET (and with DEBUG on, Django raises a
    RuntimeError, a 500). It gets the API's JSON 404 instead, which names the right path."""

    def should_redirect_with_slash(self, request):
        if request.path_info.startswith("/api/") and request.method not in SAFE_METHODS:
            return False
        return super().should_redirect_with_slash(request)
