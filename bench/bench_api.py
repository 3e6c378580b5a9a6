"""GET /api/v1/instances/ over 10,000 instances in 50 projects, a page of 100, in-process
(DRF APIClient with a bearer token: middleware, authentication, filters, the cursor page,
serialization, the ETag): as an admin, and as a tenant member of 5 projects (~1,000 rows of
theirs). Each case: the first page, a page deep in the list (its cursor followed from the
first), and a filtered page; the queries per request are counted and must be the same for
every page of a case.

Isolation: bench_instances.isolate_environment() (a SQLite file of the bench's own, Redis
database 14), which bench/__main__.py calls before Django reads its settings."""

from __future__ import annotations

import os

from .common import interleave, report

INSTANCES = int(os.environ.get("BENCH_API_INSTANCES", "10000"))
PROJECTS = 50
ROUNDS = int(os.environ.get("BENCH_API_ROUNDS", "30"))
GIB = 1024**3


def _seed():
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from cloudpanel.accounts.tokens import issue_token
    from cloudpanel.jobs.models import Job
    from cloudpanel.projects.models import Membership, Project
    from hosts.models import Host
    from images.models import Image
    from instances.models import Flavor, Instance, Volume

    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    users = get_user_model().objects
    admin = users.create_user("bench-admin", password="bench-password-1", is_staff=True)
    tenant = users.create_user("bench-tenant", password="bench-password-1")
    projects = Project.objects.bulk_create(Project(name=f"p{i:02}") for i in range(PROJECTS))
    for project in projects[:5]:
        Membership.objects.create(user=tenant, project=project, role="member")
    caps = {"cpus": 64, "memory_bytes": 512 * GIB, "kvm": True, "arch": "x86_64"}
    hosts = Host.objects.bulk_create(
        Host(name=f"hv{i}", uri=f"qemu+tcp://127.0.0.1:{22000 + i}/system", transport="tcp",
             status="online", capabilities=caps)
        for i in range(20)
    )  # fmt: skip
    flavor = Flavor.objects.create(name="small", vcpus=1, ram_mib=512, disk_gib=10)
    image = Image.objects.create(
        name="cirros", disk_format="qcow2", status="active", project=projects[0]
    )
    rows = Instance.objects.bulk_create(
        (
            Instance(name=f"vm{i:05}", project=projects[i % PROJECTS], owner=admin,
                     flavor=flavor, image=image, host=hosts[i % 20], domain_name=f"cp-{i}",
                     state=("running", "shutoff")[i % 2])
            for i in range(INSTANCES)
        ),
        batch_size=1000,
    )  # fmt: skip
    Volume.objects.bulk_create(
        (Volume(host=r.host, instance=r, pool="default", name=f"{r.domain_name}.qcow2")
         for r in rows),
        batch_size=1000,
    )  # fmt: skip
    for row in rows[::50]:
        job = Job.objects.create(
            kind="instance.reboot", target_type="instance", target_id=row.pk,
            target_name=row.name, status="running", requested_by=admin, project=row.project,
        )  # fmt: skip
        Instance.objects.filter(pk=row.pk).update(current_job=job)
    return {
        "admin": issue_token(admin, name="bench").secret,
        "tenant": issue_token(tenant, name="bench").secret,
    }


def _client(secret):
    from rest_framework.test import APIClient

    client = APIClient(SERVER_NAME="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _deep_url(client) -> str:
    url = "/api/v1/instances/?limit=100"
    for _ in range(5):
        response = client.get(url)
        assert response.status_code == 200, response.content
        url = response.json()["next"]
    return url


def run() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from .bench_instances import _isolation_problem

    problem = _isolation_problem()
    if problem:
        raise SystemExit(f"bench api: {problem}")
    secrets = _seed()
    cases, queries = {}, {}
    for who, secret in secrets.items():
        client = _client(secret)
        urls = {
            "first page": "/api/v1/instances/?limit=100",
            "6th page (cursor)": _deep_url(client),
            "filtered (state, name)": "/api/v1/instances/?limit=100&state=running&name=vm0",
        }
        for label, url in urls.items():
            with CaptureQueriesContext(connection) as captured:
                response = client.get(url)
            assert response.status_code == 200, response.content
            assert len(response.json()["results"]) == 100, (who, label)
            queries[f"{who}: {label}"] = len(captured)

            def fetch(client=client, url=url):
                assert client.get(url).status_code == 200

            cases[f"{who}: {label}"] = fetch
    samples = interleave(cases, ROUNDS)
    report(f"GET /api/v1/instances/ ({INSTANCES} instances, {PROJECTS} projects, 100/page)",
           samples)  # fmt: skip
    print("queries per request:", ", ".join(f"{k} {v}" for k, v in queries.items()))
    for who in secrets:
        counts = {v for k, v in queries.items() if k.startswith(f"{who}:")}
        assert len(counts) == 1, f"{who}: queries differ between pages: {queries}"
