"""API glue shared by every app: error mapping and the 202-with-job answer."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponseNotModified
from django.urls import reverse
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cloudpanel import errors
from cloudpanel.filters import LIST_BACKENDS
from cloudpanel.jobs.services import JobConflict
from cloudpanel.parsers import too_large
from cloudpanel.schema import ContractSchema
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


# The `code` of the domain errors' answers.
_CODE_OF = (
    (errors.HostUnavailable, "host_unavailable"),
    (errors.NotFound, "not_found"),
    (errors.Conflict, "conflict"),
    (errors.QuotaExceeded, "quota_exceeded"),
    (VirtError, "host_error"),
)


def error_body(detail: str, code: str, errors_by_field: dict | None = None) -> dict:
    """The one shape of every error answer under /api/: `detail` says what went wrong in a
    sentence, `code` is stable for programs, `errors` names each refused field (a field of
    a nested object as `outer.inner`, of a list item as `outer.0.inner`; errors not about
    one field under `non_field_errors`), empty unless the input was refused."""
    return {"detail": detail, "code": code, "errors": errors_by_field or {}}


def _flatten(errors_: object, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(errors_, dict):
        flat: dict[str, list[str]] = {}
        for key, value in errors_.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(errors_, list) and any(isinstance(e, dict | list) for e in errors_):
        flat = {}
        for index, value in enumerate(errors_):
            flat.update(_flatten(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    messages = errors_ if isinstance(errors_, list) else [errors_]
    return {prefix or "non_field_errors": [str(m) for m in messages if str(m)]} if messages else {}


def _validation_body(exc: ValidationError) -> dict:
    fields = _flatten(exc.detail)
    fields = {key: messages for key, messages in fields.items() if messages}
    first = next((f"{key}: {m[0]}" for key, m in fields.items()), "Invalid input.")
    if list(fields) == ["non_field_errors"]:
        first = fields["non_field_errors"][0]
    return error_body(first, "invalid", fields)


_CODE_OF_STATUS = {401: "not_authenticated", 403: "permission_denied", 404: "not_found"}


def _drf_code(exc, status_code: int) -> str:
    codes = exc.get_codes() if hasattr(exc, "get_codes") else None
    if isinstance(codes, str):
        return codes
    return getattr(exc, "default_code", None) or _CODE_OF_STATUS.get(status_code, "error")


def exception_handler(exc, context):
    """Our domain errors become clear 4xx/5xx answers instead of stack traces, and every
    answer has the one error body (error_body)."""
    if isinstance(exc, JobConflict):
        from cloudpanel.jobs.api.serializers import JobSerializer

        body = error_body(str(exc), "job_running")
        # The request decides what of the job its user may see.
        body["job"] = JobSerializer(exc.running, context={"request": context.get("request")}).data
        return Response(body, status=status.HTTP_409_CONFLICT)
    for kind, code in _STATUS_OF:
        if isinstance(exc, kind):
            name = next(c for k, c in _CODE_OF if isinstance(exc, k))
            return Response(error_body(str(exc), name), status=code)
    if isinstance(exc, DjangoValidationError):
        # A service's invalid input: a 400 with the same field errors as DRF's own.
        exc = as_drf_validation_error(exc)
    if isinstance(exc, RequestDataTooBig):
        # Django's own body limit, met when the body was read before DRF parsed it.
        return Response(error_body(too_large(), "too_large"), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return Response(error_body(str(exc), "too_many_fields"), status=400)
    # Anything else unknown is re-raised by DRF: the project's handler500 logs it and
    # answers {"detail": "Internal server error"} under /api/, without a trace.
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        response.data = _validation_body(exc)
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        response.data = error_body(str(detail or exc), _drf_code(exc, response.status_code))
    return response


def job_accepted(job, extra: dict | None = None) -> Response:
    """202 Accepted with the job's JSON and a Location to poll."""
    from cloudpanel.jobs.api.serializers import JobSerializer

    data = dict(JobSerializer(job).data)
    if extra:
        data.update(extra)
    location = reverse("api:job-detail", args=[job.id])
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


def weak_etag(content: bytes) -> str:
    return f'W/"{hashlib.sha256(content).hexdigest()[:32]}"'


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison: W/ prefixes do not count."""
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in {t.removeprefix("W/") for t in tags}


def contract_response(request, response):
    """What every API answer carries: an absolute Location, and on a read (GET/HEAD, 200)
    a weak ETag of its body, with 304 Not Modified when If-None-Match names it."""
    location = response.get("Location")
    if location and location.startswith("/"):
        response["Location"] = request.build_absolute_uri(location)
    if request.method not in ("GET", "HEAD") or response.status_code != 200:
        return response
    if getattr(response, "streaming", False):
        return response
    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
        response.render()
    etag = weak_etag(response.content)
    response["ETag"] = etag
    if _matches(request.headers.get("If-None-Match", ""), etag):
        not_modified = HttpResponseNotModified()
        for header in ("ETag", "Vary", "Cache-Control"):
            if header in response:
                not_modified[header] = response[header]
        return not_modified
    return response


class ApiContract:
    """Mixed into every API view: the schema of cloudpanel.schema, the lists' filters and
    ordering (cloudpanel.filters), and contract_response's headers."""

    schema = ContractSchema()
    filter_backends = LIST_BACKENDS

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        return contract_response(request, response)
