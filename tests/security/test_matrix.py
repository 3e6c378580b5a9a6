"""The authorization matrix over HTTP: every route of the URL conf, with every role.

Roles: anonymous, a viewer, a member and a manager of project A, a manager of project B
("other", who must find none of A's objects: 404, never 403, and nothing of A in any body)
and an admin. URL kwargs name A's objects. For the other project's manager, each answer on
A's object must also equal the answer for an id that does not exist (no existence oracle).
Writes run in a savepoint rolled back after each request; jobs are enqueued on commit, so
none runs (and no request reaches a hypervisor other than test:///default).
"""

from __future__ import annotations

import json
import re

import pytest
from django.db import transaction
from django.urls import reverse

from . import matrix
from .world import (
    IN_A,
    MISSING_ID,
    ROLES,
    SSH_KEY,
    TENANTS,
    TOKEN_ROLES,
    api_client,
    build_world,
    foreign_markers,
)

pytestmark = pytest.mark.django_db

ROUTES = matrix.enumerate_routes()
ADMIN_SITE = sorted(k for k in ROUTES if k.startswith(matrix.DJANGO_ADMIN_PREFIX))


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def world(django_user_model, test_host):
    return build_world(django_user_model, test_host)


def test_every_route_has_a_matrix_entry():
    """A new route (or a new method of an API route) without an entry fails here."""
    missing = sorted(k for k in ROUTES if k not in matrix.MATRIX and k not in ADMIN_SITE)
    assert not missing, f"routes without a matrix entry: {missing}"
    stale = sorted(k for k in matrix.MATRIX if k not in ROUTES)
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"
    uncovered = []
    for key, route in ROUTES.items():
        if route.methods and key in matrix.MATRIX:
            tried = {case.method for case in matrix.MATRIX[key]}
            uncovered += [f"{key} {m}" for m in sorted(route.methods - tried)]
    assert not uncovered, f"API methods without a matrix case: {uncovered}"


def test_every_socket_route_has_a_matrix_entry():
    routes = matrix.enumerate_socket_routes()
    missing = [r for r in routes if r not in matrix.SOCKETS]
    assert not missing, f"WebSocket routes without a matrix entry: {missing}"


# ---- filling URLs and bodies -------------------------------------------------------------
ADMIN_MODELS = {
    "auth_user": lambda w: w["users"]["member"].pk,
    "auth_group": None,
    "projects_project": lambda w: w["a"]["project"].pk,
    "jobs_job": lambda w: w["a"]["job"].pk,
    "hosts_host": lambda w: w["host"].pk,
    "images_image": lambda w: w["a"]["image"].pk,
    "instances_flavor": lambda w: w["flavor"].pk,
    "instances_instance": lambda w: w["a"]["instance"].pk,
    "instances_volume": lambda w: w["a"]["volume"].pk,
    "instances_snapshot": lambda w: w["a"]["snapshot"].pk,
}


def _object_for(key: str, world) -> int:
    a = world["a"]
    name = key.split(":", 1)[-1]
    if name.startswith("host") or key.startswith("hosts:"):
        return world["host"].pk
    if name.startswith("job") or key.startswith("jobs:"):
        return a["job"].pk
    # By namespace too: "projects:detail" is a project although its name says only "detail"
    # (it named the instance's pk before, and passed only while the two ids happened to match).
    if name.startswith("project") or key.startswith("projects:"):
        return a["project"].pk
    if name.startswith("apitoken") or name.startswith("token"):
        return world["tokens"]["member"].pk
    if name.startswith("audit"):
        return a["audit"].pk
    if name.startswith("user-"):
        return world["users"]["member"].pk
    if name.startswith("image") or key.startswith("images:"):
        return a["image"].pk
    if name.startswith("backup-") and key.startswith("api:"):
        return a["backup"].pk
    if "flavor" in name:
        return world["flavor"].pk
    if "keypair" in name:
        return world["keypairs"]["member"].pk
    return a["instance"].pk


def url_kwargs(key: str, world, *, missing: bool = False) -> dict:
    route = ROUTES[key]
    names = set()
    for match in re.finditer(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>", route.pattern):
        names.add(match.group(1) or match.group(2))
    names.discard("format")
    a = world["a"]
    values = {
        "pk": _object_for(key, world),
        "sid": a["snapshot"].pk,
        "mid": a["mirror"].pk,
        "bid": a["backup"].pk,
        "action": "reboot",
        "verb": "revert",
        "user_id": world["users"]["viewer"].pk,
    }
    out = {}
    for name in names:
        if name in values:
            keep = name in ("action", "verb")
            out[name] = MISSING_ID if missing and not keep else values[name]
        elif name == "object_id":
            model = re.sub(r"^admin:|_(change|delete|history)$", "", key)
            model = model if model in ADMIN_MODELS else _admin_model_of(route.pattern)
            getter = ADMIN_MODELS.get(model)
            out[name] = str(MISSING_ID if missing or getter is None else getter(world))
        elif name == "id":  # admin's user password change
            out[name] = str(MISSING_ID if missing else world["users"]["member"].pk)
        elif name == "app_label":
            out[name] = "instances"
        elif name == "content_type_id":
            from django.contrib.contenttypes.models import ContentType

            out[name] = str(ContentType.objects.get_for_model(a["instance"]).pk)
        elif name == "url":
            out[name] = "nothing-here/"
        else:
            raise AssertionError(f"{key}: no value for URL kwarg {name!r}")
    return out


def _admin_model_of(pattern: str) -> str:
    parts = pattern.removeprefix("django-admin/").split("/")
    return f"{parts[0]}_{parts[1]}" if len(parts) > 1 else ""


def _path(key: str, kwargs: dict) -> str:
    route = ROUTES[key]
    try:
        return reverse(key, kwargs=kwargs)
    except Exception:  # unnamed routes (the admin's object redirects): build from pattern
        path = route.pattern
        for name, value in kwargs.items():
            path = re.sub(rf"<(?:\w+:)?{name}>", str(value), path)
        return "/" + path


def _body(body, world):
    if body is None:
        return None
    fills = {
        "$flavor": world["flavor"].pk,
        "$bigger": world["bigger"].pk,
        "$image": world["a"]["image"].pk,
        "$project": world["a"]["project"].pk,
        "$host": world["host"].pk,
        "$ssh_key": SSH_KEY.format("mx"),
        "$spare": world["spare"].pk,
    }
    out = {}
    for name, value in body.items():
        if isinstance(value, list):
            out[name] = [fills.get(v, v) for v in value]
        else:
            out[name] = fills.get(value, value)
    return out


def fingerprint(world) -> tuple:
    """What a write would change: row counts of every kind, and A's objects' own fields."""
    from django.contrib.auth.models import User

    from cloudpanel.jobs.models import Job
    from cloudpanel.projects.models import Membership, Project
    from hosts.models import Host
    from images.models import Image
    from instances.models import Backup, DiskMirror, Flavor, Instance, KeyPair, Snapshot

    models = (Job, Project, Membership, Host, Image, Backup, DiskMirror, Flavor, Instance,
              KeyPair, Snapshot, User)  # fmt: skip
    a = world["a"]
    return (
        tuple(m.objects.count() for m in models),
        tuple(Instance.objects.filter(pk=a["instance"].pk).values_list()),
        tuple(Image.objects.filter(pk=a["image"].pk).values_list()),
        tuple(Host.objects.values_list("pk", "name", "uri", "status")),
        tuple(Project.objects.values_list()),
        tuple(DiskMirror.objects.values_list("pk", "state")),
    )


def _project_owned(key: str) -> bool:
    """Does the route's pk name one of project A's objects (not a host, flavor, key)?"""
    name = key.split(":", 1)[-1]
    return not (
        name.startswith("host") or key.startswith("hosts:") or "flavor" in name
        or "keypair" in name or key.startswith("admin:") or "token" in name
        or name.startswith("user-")
    )  # fmt: skip


def _answer(response):
    if response.status_code in (301, 302, 303):
        location = response.get("Location", "")
        if location.startswith("/login/"):
            return matrix.LOGIN
        if location.startswith("/django-admin/login/"):
            return matrix.ADMIN_LOGIN
    return response.status_code


def _send(world, role, method, path, body, *, wrote=None):
    client = api_client(world, role)
    with transaction.atomic():
        before = fingerprint(world) if wrote is not None else None
        kwargs = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        if not path.startswith("/api/") and body is not None and method == "POST":
            kwargs = {"data": body}  # pages take forms
        response = getattr(client, method.lower())(path, **kwargs)
        if wrote is not None:
            wrote.append(fingerprint(world) != before)
        transaction.set_rollback(True)
    return response


def token_expectation(case, role) -> frozenset:
    """A read-only token reads as its user (A's manager) and writes nothing (403); a token
    scoped to project B is B's, never an admin's (as B's manager). Public routes stay so."""
    answers = {case.expect[r] for r in ROLES}
    if len(answers) == 1:
        return answers.pop()
    if role == "ro":
        return case.expect["manager"] if case.method == "GET" else frozenset({403})
    return case.expect["other"]


def walk(key: str, cases, world) -> list[str]:
    problems = []
    for case in cases:
        kwargs = url_kwargs(key, world)
        path = _path(key, kwargs) + case.query.replace("$host", str(world["host"].pk))
        body = _body(case.body, world)
        roles = ROLES + (TOKEN_ROLES if path.startswith("/api/") else ())
        for role in roles:
            wrote = [] if case.method != "GET" else None  # reads are not checked for writes
            response = _send(world, role, case.method, path, body, wrote=wrote)
            wrote = wrote or [False]
            got = _answer(response)
            expected = case.expect.get(role) or token_expectation(case, role)
            if got in (200, 302) and case.method != "GET" and matrix.REFUSED in expected:
                got = f"{got} and it wrote" if wrote[0] else matrix.REFUSED
            elif (
                wrote[0]
                and any(isinstance(e, int) and e >= 400 for e in expected)
                and (got not in (200, 201, 202, 204, 302))
            ):
                problems.append(f"{case.method} {path} as {role}: refused ({got}) but it wrote")
            where = f"{case.method} {path} as {role}"
            if got not in expected:
                problems.append(f"{where}: got {got}, expected {sorted(map(str, expected))}")
            if isinstance(got, int) and got >= 500 and key != "healthz":
                problems.append(f"{where}: server error {got}")
            if got == 200 and role in (*TENANTS, *TOKEN_ROLES):
                raw = (
                    b"".join(response.streaming_content) if response.streaming else response.content
                )
                text = raw.decode("utf-8", "replace")
                if case.shows and role in IN_A and case.shows not in text:
                    problems.append(f"{where}: {case.shows!r} missing (A's objects not listed)")
                for marker in foreign_markers(world, role):
                    if marker in text:
                        problems.append(f"{where}: the body shows {marker!r} (not theirs)")
            if role in ("other", "scoped") and _project_owned(key) and set(kwargs) - {"action"}:
                missing = _path(key, url_kwargs(key, world, missing=True))
                absent = _answer(_send(world, role, case.method, missing, body))
                if absent != got:
                    problems.append(
                        f"{where}: got {got} but {absent} for a missing id (existence leak)"
                    )
            if (
                role == "anon"
                and path.startswith("/api/")
                and got == 401
                and (not response.get("WWW-Authenticate"))
            ):
                problems.append(f"{where}: 401 without WWW-Authenticate")
    return problems


@pytest.mark.parametrize("key", sorted(matrix.MATRIX))
def test_route(key, world):
    if key not in ROUTES:
        pytest.fail(f"{key} is in the matrix but not in the URL conf")
    problems = walk(key, matrix.MATRIX[key], world)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("key", ADMIN_SITE)
def test_django_admin_route(key, world):
    expect = matrix.DJANGO_ADMIN_PUBLIC.get(key, matrix.DJANGO_ADMIN_DEFAULT)
    problems = walk(key, [matrix.Case("GET", expect)], world)
    assert not problems, "\n".join(problems)
