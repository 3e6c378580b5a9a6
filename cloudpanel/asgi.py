"""ASGI entry point: HTTP through Django, WebSockets through Channels, on one origin and port."""

import os

import django
from asgiref.sync import sync_to_async

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudpanel.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.db import close_old_connections  # noqa: E402


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware chain and the view as Django's WSGI
    handler does: synchronously, in one trip to a worker thread.

    Our views and all but one middleware are synchronous. In its async mode Django calls
    each synchronous middleware's process_request and process_response through
    sync_to_async (two thread trips per middleware, about sixteen per request). The one
    async-only middleware, ServeStatic, is adapted by Django once, in the chain: it still
    hands out its files as async iterators, which this handler streams without buffering
    them through a sync iterator.

    The trip goes to the event loop's shared pool of threads, not to a thread made for the
    request (Django's per-request ThreadSensitiveContext starts and ends one thread per
    request). A request still runs wholly in one thread, so its database connection is that
    thread's; it is checked, and closed when old or broken (CONN_MAX_AGE,
    CONN_HEALTH_CHECKS), before and after each request in that thread, as Django's signals
    do for WSGI."""

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django serves only HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def get_response_async(self, request):
        return await sync_to_async(self._get_response_in_thread, thread_sensitive=False)(
            request
        )

    def _get_response_in_thread(self, request):
        close_old_connections()
        try:
            return self.get_response(request)
        finally:
            close_old_connections()


django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402
from .websockets import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Scheme, host and port of the Origin must be ours (or a trusted origin).
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
