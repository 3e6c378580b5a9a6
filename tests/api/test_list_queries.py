"""The instance list costs the same number of queries for 10 instances and for 1,000 (the
page is 100 rows): no query per row, for an admin and for a tenant."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cloudpanel.accounts.tokens import issue_token
from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership, Project
from hosts.models import Host
from images.models import Image
from instances.models import Flavor, Instance, Volume

pytestmark = pytest.mark.django_db

GIB = 1024**3


def make_fleet(projects, owner, count: int) -> None:
    caps = {"cpus": 32, "memory_bytes": 128 * GIB, "kvm": True, "arch": "x86_64"}
    hosts = Host.objects.bulk_create(
        Host(name=f"hv{i}", uri=f"qemu+tcp://127.0.0.1:{21000 + i}/system", transport="tcp",
             status="online", capabilities=caps)
        for i in range(5)
    )  # fmt: skip
    flavor = Flavor.objects.create(name="small", vcpus=2, ram_mib=2048, disk_gib=20)
    image = Image.objects.create(
        name="cirros", disk_format="qcow2", status="active", project=projects[0]
    )
    rows = Instance.objects.bulk_create(
        Instance(name=f"vm{i:05}", project=projects[i % len(projects)], owner=owner,
                 flavor=flavor, image=image, host=hosts[i % 5], domain_name=f"cp-{i}",
                 state="running")
        for i in range(count)
    )  # fmt: skip
    Volume.objects.bulk_create(
        Volume(host=row.host, instance=row, pool="default", name=f"{row.domain_name}.qcow2")
        for row in rows
    )
    for row in rows[::3]:
        job = Job.objects.create(
            kind="instance.reboot", target_type="instance", target_id=row.pk,
            target_name=row.name, status="running", requested_by=owner, project=row.project,
        )  # fmt: skip
        Instance.objects.filter(pk=row.pk).update(current_job=job)


def queries_for_a_page(user, count: int) -> tuple[int, int]:
    Instance.objects.all().delete()
    Host.objects.all().delete()
    Flavor.objects.all().delete()
    Image.objects.all().delete()
    make_fleet(list(Project.objects.order_by("id")), user, count)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user, name='q').secret}")
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/instances/?limit=100")
    assert response.status_code == 200, response.content
    return len(queries), len(response.json()["results"])


@pytest.mark.parametrize("role", ["admin", "tenant"])
def test_a_page_of_instances_costs_the_same_for_10_and_1000(admin_user, member_user, role):
    projects = [Project.objects.create(name=f"p{i}") for i in range(10)]
    user = admin_user
    if role == "tenant":
        user = member_user
        for project in projects[:5]:
            Membership.objects.create(user=user, project=project, role="member")
    small, rows_small = queries_for_a_page(user, 10)
    large, rows_large = queries_for_a_page(user, 1000)
    assert rows_small == (10 if role == "admin" else 5)
    assert rows_large == 100
    assert small == large, (small, large)
