"""Middleware of our own: static files only where they are, and Django's APPEND_SLASH
without its trap for API writes."""

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.middleware import common
from servestatic.middleware import ServeStaticMiddleware

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class CommonMiddleware(common.CommonMiddleware):
    """Django's, except that a write to an API path without its trailing slash is not
    redirected: a client would replay it as a GET (and with DEBUG on, Django raises a
    RuntimeError, a 500). It gets the API's JSON 404 instead, which names the right path."""

    def should_redirect_with_slash(self, request):
        if request.path_info.startswith("/api/") and request.method not in SAFE_METHODS:
            return False
        return super().should_redirect_with_slash(request)


class StaticFilesMiddleware:
    """ServeStatic for the paths under STATIC_URL; every other request goes straight on.

    ServeStatic is async-only. In the synchronous chain that cloudpanel.asgi runs, Django
    would take every request to the event loop and back through it, about a seventh of an
    API request's CPU. Here only static paths make that trip; ServeStatic still hands out
    its files as async iterators, which the ASGI handler streams as they are."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        self.serve_static = async_to_sync(ServeStaticMiddleware(sync_to_async(get_response)))

    def __call__(self, request):
        if request.path_info.startswith(settings.STATIC_URL):
            return self.serve_static(request)
        return self.get_response(request)
