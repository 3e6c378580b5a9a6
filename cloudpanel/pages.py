"""Glue shared by the apps' pages: run a service or operation, say how it went."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from .errors import PAGE_ERRORS, page_message


def attempt(request, fn, success: str, /, **kwargs):
    """Call `fn(**kwargs)`; a refusal becomes an error message (never a 500), success the
    `success` message. Returns fn's result, or None when it was refused."""
    try:
        result = fn(**kwargs)
    except PAGE_ERRORS as exc:
        messages.error(request, page_message(exc))
        return None
    messages.success(request, success)
    return result


def staff_required(view):
    """Admin console pages: anonymous callers go to sign in; a signed-in tenant gets 403
    (Django's staff_member_required would send them to the login page, as if signed out)."""

    @login_required
    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("This page is for administrators.")
        return view(request, *args, **kwargs)

    return guarded
