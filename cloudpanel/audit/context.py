"""The request being served, for the audit: who, from where, through the UI or the API.

A middleware keeps the current request in a context variable (sync and async alike:
asgiref carries it into the thread a sync view runs in); audit_record reads it, and finds
none in workers, beat and management commands (the system's own actions).
"""

from __future__ import annotations

import contextvars
import ipaddress

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

_request: contextvars.ContextVar = contextvars.ContextVar("cloudpanel_audit_request", default=None)

API_PREFIX = "/api/"


def current_request():
    return _request.get()


def source_of(request) -> str:
    if request is None:
        return "system"
    return "api" if request.path.startswith(API_PREFIX) else "ui"


def client_address(request) -> str | None:
    """REMOTE_ADDR as the server gives it (uvicorn rewrites it only for trusted proxies);
    X-Forwarded-For is never read here, a client could send any."""
    if request is None:
        return None
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:  # a unix socket's peer, or nothing
        return None


class AuditContextMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)

    async def __acall__(self, request):
        token = _request.set(request)
        try:
            return await self.get_response(request)
        finally:
            _request.reset(token)


class serving:
    """`with serving(request):` — the audit context outside the middleware (consumers)."""

    def __init__(self, request):
        self.request = request

    def __enter__(self):
        self._token = _request.set(self.request)
        return self.request

    def __exit__(self, *exc):
        _request.reset(self._token)
