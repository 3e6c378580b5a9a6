"""schemathesis against /api/schema/, in-process (the Django WSGI app), as an admin and as
a tenant (a member of one project), with a bearer token each.

Every check schemathesis has runs on every answer (status code, content type, response
headers, response schema conformance, no 5xx, ignored_auth: the same request without the
token must get 401, ...), except:
- max_response_time: no timing assertions in the suite (a shared 2-core machine).
- the stateful checks (use_after_free, ensure_resource_availability) only mean something
  in the stateful phase, which this bounded run does not do.
- positive_data_acceptance: the schema says what is well formed, not what exists or is
  allowed now: a well formed id of an instance that is not there is a 404, a start of a
  running instance a 409, a tenant's admin-only action a 403, all declared in the schema.

Never fuzzed, so that the server is never made to connect to an address the fuzzer chose:
host create and update (they take a hypervisor URI) and image create (a URL to import;
the multipart upload shares the operation). The hosts the rest touch are the fixture's,
on libvirt's test driver (test:///default: no connection at all).

Bounded: a few examples an operation, no deadline, hypothesis' explicit and generate
phases only (no shrinking, no example database)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import CHECKS, load_all_checks

from cloudpanel.accounts.tokens import issue_token
from cloudpanel.projects.models import Membership
from images.models import Image
from instances.models import Flavor, Instance

pytestmark = pytest.mark.django_db

NEVER_FUZZED = {
    ("POST", "/api/v1/hosts/"),
    ("PUT", "/api/v1/hosts/{id}/"),
    ("PATCH", "/api/v1/hosts/{id}/"),
    ("POST", "/api/v1/images/"),
}
EXCLUDED_CHECKS = {
    "max_response_time",
    "use_after_free",
    "ensure_resource_availability",
    "positive_data_acceptance",
}
# The resources whose views follow cloudpanel.api.ApiContract; projects, users and tokens
# join when theirs do.
FUZZED_RESOURCES = {
    "audit", "backups", "flavors", "hosts", "images", "instances", "jobs", "keypairs",
    "projects", "users", "tokens",
}  # fmt: skip
EXAMPLES = 4


def _checks():
    load_all_checks()
    return [c for c in CHECKS.get_all() if c.__name__ not in EXCLUDED_CHECKS]


@pytest.fixture
def wsgi_app():
    """Django's WSGI app, in the test's transaction: as Django's test client does, the
    connection is not closed at each request's end."""
    from django.core import signals
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(admin_user, member_user, default_project, test_host):
    Membership.objects.create(user=member_user, project=default_project, role="member")
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    image = Image.objects.create(
        name="blank", disk_format="qcow2", project=default_project, status="active"
    )
    Instance.objects.create(
        name="vm1", project=default_project, owner=member_user, flavor=flavor, image=image,
        host=test_host, domain_name="cp-vm1", state="shutoff",
    )  # fmt: skip
    return {
        "admin": issue_token(admin_user, name="fuzz").secret,
        "tenant": issue_token(member_user, name="fuzz").secret,
    }


def _run(schema, secret: str) -> list[str]:
    checks = _checks()
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in NEVER_FUZZED:
            continue
        if operation.path.split("/")[3] not in FUZZED_RESOURCES:
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        @given(case=operation.as_strategy())
        def fuzz(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {secret}"}, checks=checks)

        try:
            fuzz()
        except BaseException as exc:  # noqa: BLE001  (every operation's failures, then one assert)
            problems.append(f"{operation.method.upper()} {operation.path}: {exc!r} {exc}"[:3000])
    return problems


@pytest.mark.parametrize("who", ["admin", "tenant"])
def test_the_api_keeps_its_schema(world, wsgi_app, who):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    problems = _run(schema, world[who])
    assert not problems, "\n\n".join(problems)
