"""Glue shared by the apps' pages: run a service or operation, say how it went."""

from __future__ import annotations

from django.contrib import messages

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
