"""The authorization matrix: every route of the URL conf and of the Channels routing, with
the answer each role must get.

Keys are route names (namespaced) as `django.urls.get_resolver()` names them; routes
without a name are keyed by their pattern. Each entry lists the methods tried, the URL
kwargs filled with project A's objects, a minimal body, and per role the accepted answers.
"login" stands for a redirect to the login page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.urls import URLPattern, URLResolver, get_resolver

LOGIN = "login"
# A page refusal: the page answers 302 with an error message, and nothing was written.
REFUSED = "refused"
ADMIN_LOGIN = "admin-login"
# An allowed role's write may still meet the object's state or a minimal body: any of these
# means the request passed authorization.
WRITE_OK = frozenset({200, 201, 202, 204, 400, 409})
JOB = frozenset({202, 409})


@dataclass(frozen=True)
class Case:
    method: str
    expect: dict
    body: dict | None = None
    url_kwargs: dict = field(default_factory=dict)  # overrides of the route's default fill
    # The role's (200) answer must list nothing of the other project (see foreign_markers).
    query: str = ""
    # A's readers (and admins) must find this in the 200 body: a list that lists nothing
    # would pass the absence checks vacuously.
    shows: str = ""


def _roles(anon, viewer, member, manager, other, admin) -> dict:
    def norm(v):
        return frozenset(v) if isinstance(v, (set, frozenset, tuple, list)) else frozenset({v})

    values = (anon, viewer, member, manager, other, admin)
    names = ("anon", "viewer", "member", "manager", "other", "admin")
    return {name: norm(v) for name, v in zip(names, values, strict=True)}


# ---- API expectations (the final behaviour: anonymous 401, 403 for a signed-in
# caller who may not, 404 for another project's objects) ----------------------------------
def api_list():
    return _roles(401, 200, 200, 200, 200, 200)


def api_read():
    return _roles(401, 200, 200, 200, 404, 200)


def api_act(ok=WRITE_OK):
    return _roles(401, 403, ok, ok, 404, ok)


def api_manage(ok=WRITE_OK):
    return _roles(401, 403, 403, ok, 404, ok)


def api_admin_obj(ok=WRITE_OK):
    # Refused before any lookup is no leak either: the oracle check compares with a
    # missing id, so 403 is accepted for the other project's manager.
    return _roles(401, 403, 403, 403, {403, 404}, ok)


def api_admin(ok=WRITE_OK):
    return _roles(401, 403, 403, 403, 403, ok)


def api_signed_in(ok=WRITE_OK):
    return _roles(401, ok, ok, ok, ok, ok)


def api_public(ok=200):
    return _roles(ok, ok, ok, ok, ok, ok)


# ---- page expectations ------------------------------------------------------------------
def page_list():
    return _roles(LOGIN, 200, 200, 200, 200, 200)


def page_read():
    return _roles(LOGIN, 200, 200, 200, 404, 200)


PAGE_WRITE_OK = frozenset({200, 302})


def page_act(ok=PAGE_WRITE_OK):
    return _roles(LOGIN, {403, REFUSED}, ok, ok, 404, ok)


# Staff-only pages answer a signed-in tenant 403 (cloudpanel.pages.staff_required), never
# a login page that would read as "signed out"; admin actions behind ordinary pages refuse
# with a message and write nothing.
TENANT_OFF = frozenset({403, REFUSED})


def page_admin(ok=200):
    return _roles(LOGIN, TENANT_OFF, TENANT_OFF, TENANT_OFF, TENANT_OFF, ok)


def page_admin_obj(ok=200):
    return _roles(LOGIN, TENANT_OFF, TENANT_OFF, TENANT_OFF, TENANT_OFF | {404}, ok)


def django_admin(ok=200):
    return _roles(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ok)


GET, POST, PUT, PATCH, DELETE = "GET", "POST", "PUT", "PATCH", "DELETE"

HOST_BODY = {"name": "mx-host", "uri": "test:///default"}
# A loopback URL nothing listens on (the import job never runs: jobs start on commit).
IMAGE_IMPORT_BODY = {"name": "mx-import", "disk_format": "qcow2", "url": "http://127.0.0.1:9/x"}

# Route name -> cases. Bodies that name objects use placeholders filled by the test
# ("$flavor", "$image", "$project", "$host", "$bigger", "$user").
API = {
    "api:api-root": [Case(GET, api_signed_in(200))],
    "api:token": [Case(POST, api_public({400, 401, 403}), {"username": "x", "password": "y"})],
    "api:host-list": [Case(GET, api_admin(200)), Case(POST, api_admin({201, 400}), HOST_BODY)],
    "api:host-detail": [
        Case(GET, api_admin(200)),
        Case(PUT, api_admin({200, 400}), HOST_BODY),
        Case(PATCH, api_admin({200, 400}), {"name": "mx-renamed"}),
        Case(DELETE, api_admin({204, 409})),
    ],
    "api:host-evacuate": [Case(POST, api_admin(WRITE_OK), {})],
    "api:host-maintenance": [Case(POST, api_admin(WRITE_OK), {"enabled": True})],
    "api:host-metrics": [Case(GET, api_admin(200))],
    "api:host-refresh": [Case(POST, api_admin(WRITE_OK))],
    "api:job-list": [Case(GET, api_list(), shows="zz-a-")],
    "api:job-detail": [Case(GET, api_read())],
    "api:job-cancel": [Case(POST, api_act({200, 202, 409}))],
    "api:project-list": [
        Case(GET, api_list(), shows="zz-a-"),
        Case(POST, api_admin({201}), {"name": "mx-new-proj"}),
    ],
    "api:project-detail": [
        Case(GET, api_read()),
        Case(PUT, api_admin_obj({200}), {"name": "zz-a-proj2"}),
        Case(PATCH, api_admin_obj({200}), {"description": "x"}),
        Case(DELETE, api_admin_obj({204, 409})),
    ],
    "api:image-list": [
        Case(GET, api_list(), shows="zz-a-"),
        Case(
            POST,
            # B's manager naming project A: "unknown project" (as for a missing one).
            # Tenants may not import from loopback (400 before anything else): the URL is
            # the only one allowed here; admins may.
            _roles(401, {400, 403}, 400, 400, {400, 404}, {201, 202}),
            {**IMAGE_IMPORT_BODY, "project": "$project"},
        ),
    ],
    "api:image-detail": [
        Case(GET, api_read()),
        Case(PATCH, api_act({200, 400}), {"name": "zz-a-image2"}),
        Case(DELETE, api_act({204, 409})),
    ],
    "api:image-distribute": [Case(POST, api_admin_obj(), {"hosts": ["$host"]})],
    "api:image-mirror": [Case(POST, api_admin_obj(), {})],
    "api:image-replicas": [Case(GET, api_admin_obj(200))],
    "api:backup-list": [Case(GET, api_list(), shows="zz-a-")],
    "api:backup-detail": [Case(GET, api_read()), Case(DELETE, api_act({202, 204, 409}))],
    "api:backup-restore": [Case(POST, api_act(), {"name": "zz-a-restored"})],
    "api:flavor-list": [
        Case(GET, api_list()),
        Case(POST, api_admin({201}), {"name": "mx-f", "vcpus": 1, "ram_mib": 64, "disk_gib": 1}),
    ],
    "api:flavor-detail": [
        Case(GET, api_signed_in(200)),
        Case(PUT, api_admin({200}), {"name": "mx-f2", "vcpus": 1, "ram_mib": 64, "disk_gib": 1}),
        Case(PATCH, api_admin({200}), {"name": "mx-f3"}),
        Case(DELETE, api_admin({204, 409})),
    ],
    "api:instance-list": [
        Case(GET, api_list(), shows="zz-a-"),
        Case(
            POST,
            _roles(401, 403, JOB | {400}, JOB | {400}, {400, 404}, JOB | {400}),
            {"name": "mx-new-vm", "image": "$image", "flavor": "$flavor", "project": "$project"},
        ),
    ],
    "api:instance-adopt": [Case(POST, api_admin(), {"host": "$host", "domain": "test"})],
    "api:instance-unmanaged": [Case(GET, api_admin(200), query="?host=$host")],
    "api:instance-detail": [
        Case(GET, api_read()),
        Case(PATCH, api_act({200}), {"name": "zz-a-vm2"}),
        Case(DELETE, api_act(JOB)),
    ],
    "api:instance-backups": [Case(GET, api_read()), Case(POST, api_act(), {"name": "zz-a-b2"})],
    "api:instance-capture": [Case(POST, api_act(), {"name": "zz-a-captured"})],
    "api:instance-console": [Case(POST, api_act({201, 409}))],
    "api:instance-forget": [Case(POST, api_admin_obj())],
    "api:instance-guest": [Case(GET, api_read())],
    "api:instance-metrics": [Case(GET, api_read())],
    "api:instance-migrate": [Case(POST, api_admin_obj(), {})],
    "api:instance-mirror-pivot": [Case(POST, api_admin_obj())],
    "api:instance-mirror-stop": [Case(POST, api_admin_obj())],
    "api:instance-mirrors": [
        Case(GET, api_admin_obj(200)),  # mirroring is admin-only, reading it too
        Case(POST, api_admin_obj(), {"disk": "vda", "pool": "default"}),
    ],
    "api:instance-password": [Case(POST, api_act(), {"user": "root", "password": "pw-x-1"})],
    "api:instance-reboot": [Case(POST, api_act(JOB))],
    "api:instance-rebuild": [Case(POST, api_admin_obj(), {})],
    "api:instance-recovery": [Case(GET, api_admin_obj(200))],
    "api:instance-reset": [Case(POST, api_act(JOB))],
    "api:instance-resize": [Case(POST, api_act(JOB | {400}), {"flavor": "$bigger"})],
    "api:instance-resume": [Case(POST, api_act(JOB))],
    "api:instance-shutdown": [Case(POST, api_act(JOB), {})],
    "api:instance-snapshot-delete": [Case(DELETE, api_act(JOB))],
    "api:instance-snapshot-revert": [Case(POST, api_act(JOB))],
    "api:instance-snapshots": [
        Case(GET, api_read()),
        Case(POST, api_act(JOB), {"name": "zz-a-snap2"}),
    ],
    "api:instance-start": [Case(POST, api_act(JOB))],
    "api:instance-stop": [Case(POST, api_act(JOB))],
    "api:instance-suspend": [Case(POST, api_act(JOB))],
    # Owner-scoped: everyone signed in has their own; the URL names the member's key
    # (admins see every key).
    "api:keypair-list": [
        Case(GET, api_signed_in(200)),
        Case(POST, api_signed_in({201}), {"name": "mx-key", "public_key": "$ssh_key"}),
    ],
    "api:keypair-detail": [
        Case(GET, _roles(401, 404, 200, 404, 404, 200)),
        Case(DELETE, _roles(401, 404, 204, 404, 404, 204)),
    ],
    # K1: members and quotas; users for admins.
    "api:project-members": [
        Case(GET, api_read()),
        Case(POST, api_manage({201}), {"user": "$spare", "role": "viewer"}),
    ],
    "api:project-member": [
        Case(PUT, api_manage({200}), {"role": "member"}),
        Case(PATCH, api_manage({200}), {"role": "member"}),
        Case(DELETE, api_manage({204})),
    ],
    "api:project-quota": [
        Case(GET, api_read()),
        Case(PUT, api_admin_obj({200}), {"instances": 10}),
    ],
    "api:user-list": [
        Case(GET, api_admin(200)),
        Case(POST, api_admin({201}), {"username": "mx-new-user", "password": "Pw-x-123456789"}),
    ],
    "api:user-detail": [
        Case(GET, api_admin(200)),
        Case(PUT, api_admin({200, 400}), {"username": "member-user"}),
        Case(PATCH, api_admin({200}), {"first_name": "M"}),
        Case(DELETE, api_admin({204})),
    ],
    # K2: personal tokens, each user's own (the URL names the member's).
    "api:apitoken-list": [
        Case(GET, api_signed_in(200)),
        # (a token scoped to a project may be refused making tokens: 403)
        Case(POST, {**api_signed_in({201}), "scoped": frozenset({201, 403})}, {"name": "mx-tok"}),
    ],
    "api:apitoken-detail": [
        Case(GET, _roles(401, 404, 200, 404, 404, 404)),
        Case(DELETE, _roles(401, 404, {200, 204}, 404, 404, 404)),
    ],
    "api:apitoken-revoke": [Case(POST, _roles(401, 404, {200, 204}, 404, 404, 404))],
    # K4: the audit log, tenants their projects' events.
    "api:audit-list": [Case(GET, api_list(), shows="zz-a-")],
    "api:audit-export": [Case(GET, api_list(), shows="zz-a-", query="?format=json")],
    "api:audit-detail": [Case(GET, api_read())],
}

PAGES = {
    "overview": [Case(GET, page_list())],
    "login": [Case(GET, api_public(200))],
    "logout": [Case(POST, api_public(LOGIN))],
    "healthz": [Case(GET, api_public({200, 503}))],  # 503: a dependency is down
    "metrics": [Case(GET, api_public({200, 403}))],  # by token or allowed network
    "portal": [Case(GET, page_list(), shows="zz-a-")],
    # The API's documentation is public (it holds nothing of any project).
    "schema": [Case(GET, api_public(200))],
    "api-docs": [Case(GET, api_public(200))],
    "hosts:list": [Case(GET, page_admin())],
    "hosts:new": [Case(GET, page_admin())],
    "hosts:detail": [Case(GET, page_admin())],
    "hosts:refresh": [Case(POST, page_admin(302))],
    "hosts:delete": [Case(POST, page_admin(302))],
    "hosts:maintenance": [Case(POST, page_admin(302), {"enabled": "on"})],
    "hosts:evacuate": [Case(POST, page_admin(302))],
    "images:list": [Case(GET, page_list(), shows="zz-a-")],
    "images:upload": [Case(POST, _roles(LOGIN, {403, REFUSED, 400}, *[{200, 302, 400}] * 4))],
    "images:import": [
        Case(
            POST,
            # (the minimal form is incomplete for admins: 400 re-renders it)
            _roles(LOGIN, {400, 403, REFUSED}, 400, 400, {400, 404, REFUSED}, {302, 400}),
            {**IMAGE_IMPORT_BODY, "project": "$project"},
        )
    ],
    "images:detail": [Case(GET, page_read())],
    "images:mirror": [Case(POST, page_admin_obj(302))],
    "images:delete": [Case(POST, page_act(302))],
    "images:distribution": [Case(POST, page_admin_obj({200, 302}))],
    "images:distribute": [Case(POST, page_admin_obj(302), {"hosts": ["$host"]})],
    "instances:list": [Case(GET, page_list(), shows="zz-a-")],
    "instances:new": [
        Case(GET, page_list()),  # the form; creating is what is checked
        Case(
            POST,
            _roles(LOGIN, {403, REFUSED}, 302, 302, {200, 400, 404, REFUSED}, 302),
            {"name": "mx-page-vm", "image": "$image", "flavor": "$flavor", "project": "$project"},
        ),
    ],
    "instances:adopt": [Case(POST, page_admin({200, 302}), {"host": "$host", "domain": "test"})],
    "instances:detail": [Case(GET, page_read())],
    "instances:action": [Case(POST, page_act(302))],
    "instances:resize": [Case(POST, page_act(302), {"flavor": "$bigger"})],
    "instances:password": [Case(POST, page_act(302), {"user": "root", "password": "pw-x-1"})],
    "instances:delete": [Case(POST, page_act(302))],
    # The console pages hold no secret (the ticket comes from the API): viewers see them.
    "instances:console": [Case(GET, page_read())],
    "instances:serial": [Case(GET, page_read())],
    "instances:forget": [Case(POST, page_admin_obj(302))],
    "instances:snapshot-create": [Case(POST, page_act(302), {"name": "zz-a-snap3"})],
    "instances:snapshot-revert": [Case(POST, page_act(302))],
    "instances:snapshot-delete": [Case(POST, page_act(302))],
    "instances:flavors": [Case(GET, page_admin())],
    "instances:keypairs": [Case(GET, page_list())],
    "instances:keypair-delete": [Case(POST, _roles(LOGIN, 404, 302, 404, 404, {302, 404}))],
    "instances:flavor-delete": [Case(POST, page_admin(302))],
    "instances:migrate": [Case(POST, page_admin_obj(302))],
    "instances:mirror-start": [Case(POST, page_admin_obj(302), {"disk": "vda", "pool": "default"})],
    "instances:mirror-pivot": [Case(POST, page_admin_obj(302))],
    "instances:mirror-stop": [Case(POST, page_admin_obj(302))],
    "instances:backup-create": [Case(POST, page_act(302), {"name": "zz-a-b3"})],
    "instances:backup-restore": [Case(POST, page_act(302), {"name": "zz-a-restored2"})],
    "instances:backup-delete": [Case(POST, page_act(302))],
    "instances:capture": [Case(POST, page_act(302), {"name": "zz-a-captured2"})],
    "instances:rebuild": [Case(POST, page_admin_obj(302))],
    "instances:leftover-remove": [Case(POST, page_admin({302, 400, 404}))],
    # K1's admin console project pages (staff only).
    "projects:list": [Case(GET, page_admin())],
    "projects:detail": [Case(GET, page_admin())],
    "projects:update": [Case(POST, page_admin(302), {"name": "zz-a-proj3"})],
    "projects:delete": [Case(POST, page_admin(302))],
    "projects:member-add": [Case(POST, page_admin(302), {"user": "$spare", "role": "viewer"})],
    "projects:member-change": [Case(POST, page_admin(302), {"role": "member"})],
    "projects:member-remove": [Case(POST, page_admin(302))],
    "projects:quota": [Case(POST, page_admin(302), {"instances": "10"})],
    # K2's own tokens page.
    "accounts:tokens": [Case(GET, page_list())],
    "accounts:token-revoke": [Case(POST, _roles(LOGIN, 404, 302, 404, 404, 404))],
    # K4's audit page: tenants read their projects' events.
    "audit:list": [Case(GET, page_list(), shows="zz-a-")],
    # K5's portal (tenants; the URL names A's instance).
    "portal-project": [
        Case(POST, _roles(LOGIN, 302, 302, 302, {302, 404}, {200, 302}), {"project": "$project"})
    ],  # fmt: skip
    "portal-new": [
        Case(GET, page_list()),
        Case(
            POST,
            _roles(LOGIN, {403, REFUSED}, 302, 302, {200, 400, 404, REFUSED}, {200, 302}),
            {"name": "mx-portal-vm", "image": "$image", "flavor": "$flavor", "project": "$project"},
        ),
    ],
    "portal-instance": [Case(GET, page_read())],
    "portal-power": [Case(POST, page_act(302))],
    "portal-delete": [Case(POST, page_act(302))],
    "portal-snapshot": [Case(POST, page_act(302), {"name": "zz-a-snap4"})],
    "portal-snapshot-change": [Case(POST, page_act(302))],
    "portal-backup": [Case(POST, page_act(302), {"name": "zz-a-b4"})],
    "portal-backup-restore": [Case(POST, page_act(302), {"name": "zz-a-restored3"})],
    "portal-backup-delete": [Case(POST, page_act(302))],
    "jobs:list": [Case(GET, page_list(), shows="zz-a-")],
    "jobs:detail": [Case(GET, page_read())],
}

MATRIX = {**API, **PAGES}

# The Django admin site is staff-only by construction (its own login page for the rest):
# every one of its routes, including those a newly registered model adds, is walked with
# this expectation.
DJANGO_ADMIN_PREFIX = "admin:"
DJANGO_ADMIN_PUBLIC = {
    "admin:login": api_public({200, 302}),
    "admin:logout": api_public({200, 302, 405}),
    "admin:jsi18n": _roles(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200),
}
# Read-only admin models answer 403 to their add page, the autocomplete 403 without terms.
DJANGO_ADMIN_DEFAULT = django_admin({200, 302, 403, 404})

# WebSocket routes (cloudpanel/routing.py) -> what tests/security/test_matrix_sockets.py
# checks for them.
SOCKETS = {
    "ws/status/": "status stream: refused anonymous; B's manager never gets A's events",
    "ws/jobs/": "job stream: refused anonymous; B's manager never gets A's jobs",
    "ws/jobs/<int:job_id>/": "one job: refused anonymous; A's job refused to B's manager",
    "ws/instances/<uuid:uuid>/console/": "VNC: ticket needed; A's ticket refused to B",
    "ws/instances/<uuid:uuid>/serial/": "serial: ticket needed; A's ticket refused to B",
    "": "any other path: closed (4404)",
}


@dataclass(frozen=True)
class Route:
    key: str
    pattern: str
    methods: frozenset  # for API viewset routes: the methods the router maps; else empty
    callback: object


def enumerate_routes() -> dict[str, Route]:
    """Every route of the URL conf, walked recursively, by name (or pattern)."""
    found: dict[str, Route] = {}

    def walk(resolver, prefix: str, namespace: str) -> None:
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                ns = namespace
                if entry.namespace:
                    ns = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
                walk(entry, prefix + str(entry.pattern), ns)
            elif isinstance(entry, URLPattern):
                pattern = prefix + str(entry.pattern)
                if entry.name:
                    key = f"{namespace}:{entry.name}" if namespace else entry.name
                else:
                    key = f"{namespace}:{pattern}" if namespace else pattern
                actions = getattr(entry.callback, "actions", None) or {}
                methods = frozenset(m.upper() for m in actions)
                if key in found:  # format-suffix twins share the name and the view
                    methods |= found[key].methods
                    pattern = found[key].pattern
                found[key] = Route(key, pattern, methods, entry.callback)

    walk(get_resolver(), "", "")
    return found


def enumerate_socket_routes() -> list[str]:
    from cloudpanel.routing import websocket_urlpatterns

    return [str(p.pattern) for p in websocket_urlpatterns]
