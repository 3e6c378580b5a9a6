"""Pages read the database only, with a bounded number of queries whatever the fleet's size
(a peer panel took two minutes for its instance list at 90 hosts by asking every host)."""

import pytest

from cloudpanel import virt
from cloudpanel.projects.models import Project
from hosts.models import Host
from instances.models import Flavor, Instance

pytestmark = pytest.mark.django_db

GIB = 1024**3


@pytest.fixture
def fleet(default_project):
    caps = {"cpus": 32, "memory_bytes": 128 * GIB, "kvm": True, "arch": "x86_64"}
    pools = [{"name": "default", "active": True, "capacity_bytes": 2000 * GIB}]
    hosts = Host.objects.bulk_create(
        Host(name=f"hv{i:03d}", uri=f"qemu+tcp://127.0.0.1:{20000 + i}/system", transport="tcp",
             status="online", capabilities=caps, storage_pools=pools)
        for i in range(40)
    )
    flavor = Flavor.objects.create(name="small", vcpus=2, ram_mib=2048, disk_gib=20)
    projects = [default_project, Project.objects.create(name="other")]
    Instance.objects.bulk_create(
        Instance(name=f"vm{i}", project=projects[i % 2], flavor=flavor, host=hosts[i % 40],
                 domain_name=f"cp-{i}", state="running")
        for i in range(400)
    )
    return hosts


@pytest.fixture
def no_libvirt(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a page asked libvirt")

    monkeypatch.setattr(virt.get_pool(), "call", refuse)
    monkeypatch.setattr(virt.get_pool(), "get", refuse)


@pytest.mark.parametrize("url", ["/", "/hosts/", "/instances/", "/jobs/", "/images/"])
def test_pages_stay_fast_with_40_hosts_and_400_instances(
    client, admin_user, fleet, no_libvirt, django_assert_max_num_queries, url
):
    client.force_login(admin_user)
    with django_assert_max_num_queries(20):
        response = client.get(url)
    assert response.status_code == 200


def test_api_lists_stay_bounded(api_client, fleet, no_libvirt, django_assert_max_num_queries):
    for url in ("/api/v1/hosts/", "/api/v1/instances/"):
        with django_assert_max_num_queries(20):
            assert api_client.get(url).status_code == 200
