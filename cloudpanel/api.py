"""API glue shared by every app: error mapping and the 202-with-job answer."""

from __future__ import annotations

from contextlib import contextmanager

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cloudpanel import errors
from cloudpanel.jobs.services import JobConflict
from cloudpanel.parsers import too_large
from cloudpanel.virt import VirtError

# The domain errors' answers (cloudpanel/errors.py); the first match wins.
_STATUS_OF = (
    (errors.HostUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (errors.NotFound, status.HTTP_404_NOT_FOUND),
    (errors.Conflict, status.HTTP_409_CONFLICT),
    (errors.QuotaExceeded, status.HTTP_403_FORBIDDEN),
    # Any other libvirt failure: the host answered, but not as asked.
    (VirtError, status.HTTP_502_BAD_GATEWAY),
)


def as_drf_validation_error(exc: DjangoValidationError) -> ValidationError:
    """A service's Django ValidationError as DRF's (a 400 with the same field errors)."""
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)


@contextmanager
def drf_validation_errors():
    """Inside the block, Django validation errors are raised again as DRF 400s."""
    try:
        yield
    except DjangoValidationError as exc:
        raise as_drf_validation_error(exc) from exc


def call_service(fn, /, **kwargs):
    """Run a service; Django validation errors become 400s with field errors."""
    with drf_validation_errors():
        return fn(**kwargs)


def exception_handler(exc, context):
    """Our domain errors become clear 4xx/5xx answers instead of stack traces."""
    if isinstance(exc, JobConflict):
        from cloudpanel.jobs.api.serializers import JobSerializer

        return Response(
            {
                "detail": str(exc),
                # The request decides what of the job its user may see.
                "job": JobSerializer(exc.running, context={"request": context.get("request")}).data,
            },
            status=status.HTTP_409_CONFLICT,
        )
    for kind, code in _STATUS_OF:
        if isinstance(exc, kind):
            return Response({"detail": str(exc)}, status=code)
    if isinstance(exc, DjangoValidationError):
        # A service's invalid input: a 400 with the same field errors as DRF's own.
        return drf_exception_handler(as_drf_validation_error(exc), context)
    if isinstance(exc, RequestDataTooBig):
        # Django's own body limit, met when the body was read before DRF parsed it.
        return Response({"detail": too_large()}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    # Anything else unknown is re-raised by DRF: the project's handler500 logs it and
    # answers {"detail": "Internal server error"} under /api/, without a trace.
    return drf_exception_handler(exc, context)


def job_accepted(job, extra: dict | None = None) -> Response:
    """202 Accepted with the job's JSON and a Location to poll."""
    from cloudpanel.jobs.api.serializers import JobSerializer

    data = dict(JobSerializer(job).data)
    if extra:
        data.update(extra)
    location = reverse("api:job-detail", args=[job.id])
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})
