"""What a list request costs in queries: a fixed number, whatever the rows hold (running
jobs, owners, hosts), for admins and tenants alike. A query per row crept in once (the
requester of each instance's current job); these counts catch the next one."""

import pytest
from rest_framework.test import APIClient

from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership, Project
from hosts.models import Host
from images.models import Image
from instances.models import Flavor, Instance, Volume

from .conftest import api_token_for

pytestmark = pytest.mark.django_db

GIB = 1024**3


def make_fleet(project, other, owner, instances: int, running: int) -> None:
    caps = {"cpus": 32, "memory_bytes": 128 * GIB, "kvm": True, "arch": "x86_64"}
    pools = [{"name": "default", "active": True, "capacity_bytes": 2000 * GIB}]
    hosts = Host.objects.bulk_create(
        Host(name=f"hv{i}", uri=f"qemu+tcp://127.0.0.1:{21000 + i}/system", transport="tcp",
             status="online", capabilities=caps, storage_pools=pools)
        for i in range(5)
    )  # fmt: skip
    flavor = Flavor.objects.create(name="small", vcpus=2, ram_mib=2048, disk_gib=20)
    image = Image.objects.create(
        name="cirros", disk_format="qcow2", project=project, status="active"
    )
    rows = Instance.objects.bulk_create(
        Instance(name=f"vm{i}", project=(project, other)[i % 2], owner=owner, flavor=flavor,
                 image=image, host=hosts[i % 5], domain_name=f"cp-{i}", state="running")
        for i in range(instances)
    )  # fmt: skip
    for instance in rows[:running]:
        job = Job.objects.create(
            kind="instance.reboot", target_type="instance", target_id=instance.pk,
            target_name=instance.name, status="running", requested_by=owner,
            project=instance.project,
        )  # fmt: skip
        Instance.objects.filter(pk=instance.pk).update(current_job=job)


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_for(user)}")
    return client


@pytest.mark.parametrize("size", [(4, 2), (40, 20)])
def test_instance_list_costs_two_queries_for_an_admin(
    admin_user, default_project, django_assert_num_queries, size
):
    make_fleet(default_project, Project.objects.create(name="other"), admin_user, *size)
    client = token_client(admin_user)
    # The token and its user, the page with every related name and job (a cursor page: no
    # count), the page's volumes.
    with django_assert_num_queries(3):
        response = client.get("/api/v1/instances/")
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == size[0]
    with_job = [row for row in body["results"] if row["job"]]
    assert len(with_job) == size[1]
    assert {row["job"]["requested_by"] for row in with_job} == {admin_user.username}
    assert all(
        row["host_name"] and row["flavor_name"] == "small" and row["image_name"] == "cirros"
        for row in body["results"]
    )


@pytest.mark.parametrize("size", [(4, 2), (40, 20)])
def test_instance_list_costs_a_fixed_number_for_a_tenant(
    member_user, default_project, django_assert_num_queries, size
):
    Membership.objects.create(user=member_user, project=default_project, role="member")
    make_fleet(default_project, Project.objects.create(name="other"), member_user, *size)
    client = token_client(member_user)
    # The token and its user, the memberships, the page.
    with django_assert_num_queries(3):
        response = client.get("/api/v1/instances/")
    assert response.status_code == 200
    assert len(response.json()["results"]) == size[0] // 2


@pytest.mark.parametrize("size", [(4, 2), (40, 20)])
def test_overview_costs_four_queries(
    client, admin_user, default_project, django_assert_num_queries, size
):
    make_fleet(default_project, Project.objects.create(name="other"), admin_user, *size)
    client.force_login(admin_user)
    # The session, its user, the recent jobs, the hosts with their allocation.
    with django_assert_num_queries(4):
        response = client.get("/")
    assert response.status_code == 200


@pytest.mark.parametrize("url", ["/api/v1/hosts/", "/api/v1/jobs/", "/api/v1/images/"])
def test_other_lists_cost_two_queries(admin_user, default_project, django_assert_num_queries, url):
    make_fleet(default_project, Project.objects.create(name="other"), admin_user, 40, 20)
    client = token_client(admin_user)
    with django_assert_num_queries(2):
        assert client.get(url).status_code == 200


@pytest.mark.parametrize(
    ("query", "count", "ids"),
    [
        ("?limit=2", 5, 2),  # more follow: the COUNT query says how many
        ("?limit=2&offset=4", 5, 1),  # the last page: counted from the page itself
        ("?limit=5", 5, 5),  # exactly one full page
        ("?limit=2&offset=50", 5, 0),  # past the end
    ],
)
def test_offset_pages_count_right_with_or_without_the_count_query(
    admin_user, default_project, query, count, ids
):
    """Lists of bounded size (hosts, images, flavors...) page by limit/offset with a count;
    instances and jobs page by cursor (tests/api)."""
    make_fleet(default_project, Project.objects.create(name="other"), admin_user, 7, 0)
    body = token_client(admin_user).get(f"/api/v1/hosts/{query}").json()
    assert body["count"] == count and len(body["results"]) == ids
    assert (body["next"] is None) == (
        query in ("?limit=2&offset=4", "?limit=5", "?limit=2&offset=50")
    )


def _varied_rows(project, owner) -> list[int]:
    """Rows for every branch of a read: no host, image, owner or job; an adopted instance
    with a reason; finished and failed jobs with results, one without a requester."""
    flavor = Flavor.objects.get(name="small")
    bare = Instance.objects.create(name="bare", project=project, flavor=flavor, state="error",
                                   state_reason="libvirt: disk /var/lib/x is gone")  # fmt: skip
    adopted = Instance.objects.create(
        name="adopted", project=project, flavor=flavor, owner=owner, adopted=True,
        host=Host.objects.first(), ip_addresses=["10.0.0.5"],
    )  # fmt: skip
    Volume.objects.create(host=adopted.host, instance=adopted, pool="default", name="a.qcow2")
    for instance, requester, status in ((bare, None, "failed"), (adopted, owner, "succeeded")):
        job = Job.objects.create(
            kind="instance.start", target_type="instance", target_id=instance.pk,
            target_name=instance.name, status=status, requested_by=requester, project=project,
            result={"state": "running", "path": "/var/lib/x"}, error="host said no",
            log="on hv0\n", progress=100,
        )  # fmt: skip
        Job.objects.filter(pk=job.pk).update(started_at=job.created_at, finished_at=job.created_at)
        Instance.objects.filter(pk=instance.pk).update(current_job=job)
    return [bare.pk, adopted.pk]


@pytest.mark.parametrize("who", ["admin", "tenant"])
def test_the_short_read_path_answers_byte_for_byte_as_drf(
    admin_user, member_user, default_project, monkeypatch, who
):
    """cloudpanel.fast_serializers reads the same fields by a shorter path: the answers of
    the list, a detail and the job list are those of DRF's own Serializer.to_representation."""
    from rest_framework import serializers

    from cloudpanel.fast_serializers import FastReadMixin

    user = admin_user if who == "admin" else member_user
    Membership.objects.create(user=member_user, project=default_project, role="member")
    make_fleet(default_project, Project.objects.create(name="other"), admin_user, 6, 3)
    ids = _varied_rows(default_project, member_user)
    client = token_client(user)
    urls = ["/api/v1/instances/", *(f"/api/v1/instances/{pk}/" for pk in ids), "/api/v1/jobs/"]

    short = [client.get(url) for url in urls]
    monkeypatch.setattr(
        FastReadMixin, "to_representation", serializers.Serializer.to_representation
    )
    drf = [client.get(url) for url in urls]

    for url, ours, theirs in zip(urls, short, drf, strict=True):
        assert ours.status_code == theirs.status_code == 200, url
        assert ours.content == theirs.content, url
    listed = {row["name"]: row for row in short[0].json()["results"]}
    assert listed["bare"]["job"]["requested_by"] is None and listed["adopted"]["adopted"] is True
    assert listed["bare"]["created_at"].endswith("Z")
    if who == "tenant":
        assert "host" not in listed["adopted"] and "disk" not in listed["bare"]["state_reason"]
        assert "volumes" not in listed["adopted"]
    else:  # the page's volumes, read in one query, are each instance's own
        adopted = [{"pool": "default", "name": "a.qcow2", "path": "", "role": "root"}]
        assert listed["adopted"]["volumes"] == adopted and listed["bare"]["volumes"] == []
        detail = short[1 + ids.index(listed["adopted"]["id"])].json()
        assert detail["volumes"] == adopted
