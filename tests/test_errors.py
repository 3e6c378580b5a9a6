"""One error vocabulary: each domain error gets its status and the one JSON shape from the
API's handler, and one line from the pages' helper."""

import pytest
from django.core.exceptions import ValidationError

from cloudpanel import errors
from cloudpanel.api import exception_handler
from cloudpanel.virt import HostUnreachable, NotFound, OperationInvalid, VirtError


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.NotFound("no such thing"), 404),
        (errors.Conflict("busy"), 409),
        (errors.HostUnavailable("host h is offline"), 503),
        (errors.QuotaExceeded("project p has no vCPUs left"), 403),
        (errors.PermissionDenied("not yours"), 403),
        (errors.InvalidInput({"name": ["A name is required."]}), 400),
        (ValidationError({"name": ["Django's own, as forms raise it."]}), 400),
        # libvirt's errors are kinds of the same errors
        (NotFound("Domain cp-1 not found"), 404),
        (HostUnreachable("Connection refused"), 503),
        (OperationInvalid("domain is not running"), 409),
        (VirtError("libvirt said no"), 502),
    ],
)
def test_the_api_answers_each_domain_error_with_its_status_and_one_shape(exc, status):
    response = exception_handler(exc, {})
    assert response is not None and response.status_code == status
    assert set(response.data) == {"detail", "code", "errors"}
    if status == 400:
        assert list(response.data["errors"]) == ["name"]
    else:
        assert str(response.data["detail"]) == str(exc) and response.data["errors"] == {}


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (errors.InvalidInput({"flavor": ["Too small."], "name": ["Taken."]}),
         "flavor: Too small.; name: Taken."),
        (errors.InvalidInput("Bad."), "Bad."),
        (errors.PermissionDenied(), "Not allowed."),
        (errors.Conflict("busy"), "busy"),
        (HostUnreachable("down"), "down"),
    ],
)  # fmt: skip
def test_pages_word_every_refusal_in_one_line(exc, line):
    assert isinstance(exc, errors.PAGE_ERRORS)
    assert errors.page_message(exc) == line


def test_services_raise_no_drf_errors():
    # The API's handler is the only place that knows DRF: the domain errors do not.
    for cls in (errors.NotFound, errors.Conflict, errors.InvalidInput, errors.PermissionDenied):
        assert not any(base.__module__.startswith("rest_framework") for base in cls.__mro__)
