"""The domain's errors: what services, selectors and operations raise when they refuse.

One vocabulary for the whole product. Services never import DRF or Channels: the API's
exception handler (cloudpanel/api.py) maps these to one JSON error shape, and
`page_message()` below turns them into the one-line message a page shows.

InvalidInput and PermissionDenied are Django's own ValidationError and PermissionDenied
underneath, so forms (add_service_errors), model validation and Django's 403 handling
keep understanding them. The libvirt layer's errors (cloudpanel.virt.errors) are kinds of
these too: a missing domain is a NotFound, an unreachable host a HostUnavailable.
"""

from __future__ import annotations

from django.core import exceptions as django_exceptions


class DomainError(Exception):
    """Base of every refusal a person should read (its message is for them)."""


class NotFound(DomainError):
    """The object does not exist, or the caller may not know that it does."""


class Conflict(DomainError):
    """The request cannot proceed in the object's current state."""


class HostUnavailable(DomainError):
    """The host that would do the work cannot be reached right now."""


class QuotaExceeded(DomainError):
    """The project's quota does not leave room for what was asked."""


class InvalidInput(django_exceptions.ValidationError, DomainError):
    """Bad input: a message, a list, or a {field: [messages]} dict (Django's shapes)."""


class PermissionDenied(django_exceptions.PermissionDenied, DomainError):
    """The caller may not do this."""


def input_messages(exc: django_exceptions.ValidationError) -> str:
    """A validation error as one line: `field: message; other: message`."""
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    return " ".join(exc.messages)


# What a page shows for each refusal; anything else is a bug and gets a 500.
PAGE_ERRORS = (
    DomainError,
    django_exceptions.ValidationError,
    django_exceptions.PermissionDenied,
)


def page_message(exc: BaseException) -> str:
    """The message a page shows for a refused request (see PAGE_ERRORS)."""
    if isinstance(exc, django_exceptions.ValidationError):
        return input_messages(exc)
    if isinstance(exc, django_exceptions.PermissionDenied):
        return str(exc) or "Not allowed."
    return str(exc) or exc.__class__.__name__
