"""A host's own default pool and network, not the literal "default": provisioning puts the
image copy and the disk in the host's pool, the NIC on its network, and the volume rows say
where; delete removes them from there."""

import uuid

import pytest

from hosts.services import host_sync, host_update
from images.models import ImageReplica
from instances import operations
from instances.models import Instance
from lab import virsh

from .conftest import pool_volumes, run_ok, uri_of

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


@pytest.fixture
def other_pool_and_network(lab_hosts, tmp_path):
    host = lab_hosts[1]
    uri, tag = uri_of(host), uuid.uuid4().hex[:6]
    pool, net = f"fast-{tag}", f"lan-{tag}"
    # Inside the lab host's namespace /var/lib/libvirt is that host's own directory.
    virsh(uri, "pool-define-as", pool, "dir", "--target", f"/var/lib/libvirt/{pool}")
    virsh(uri, "pool-build", pool)
    virsh(uri, "pool-start", pool)
    net_xml = tmp_path / "net.xml"  # isolated: a bridge, no addresses, no dnsmasq
    net_xml.write_text(f"<network><name>{net}</name><bridge name='cp{tag}'/></network>")
    virsh(uri, "net-create", str(net_xml))
    yield host, pool, net
    virsh(uri, "net-destroy", net, check=False)
    virsh(uri, "pool-destroy", pool, check=False)
    virsh(uri, "pool-delete", pool, check=False)
    virsh(uri, "pool-undefine", pool, check=False)


def test_provisioning_uses_the_hosts_default_pool_and_network(
    other_pool_and_network, admin_user, qcow2_image, tiny_flavor
):
    host, pool, net = other_pool_and_network
    host = host_update(host=host, default_pool=pool, default_network=net)
    host_sync(host=host)
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="elsewhere", image=qcow2_image, flavor=tiny_flavor, host=host
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    root = instance.volumes.get()
    assert (root.pool, root.role, root.state) == (pool, "root", "ready")
    assert root.name in pool_volumes(host, pool) and root.path.startswith(
        f"/var/lib/libvirt/{pool}/"
    )
    assert ImageReplica.objects.get(image=qcow2_image, host=host).pool == pool
    xml = virsh(uri_of(host), "dumpxml", instance.domain_name).stdout
    assert f"network='{net}'" in xml or f'network="{net}"' in xml
    assert job.result["network"] == net

    run_ok(operations.DELETE.start(user=admin_user, target=instance))
    assert root.name not in pool_volumes(host, pool)


def test_a_host_whose_default_pool_is_missing_takes_no_instances(
    lab_hosts, admin_user, qcow2_image, tiny_flavor
):
    from cloudpanel.errors import InvalidInput

    host = host_update(host=lab_hosts[1], default_pool="no-such-pool")
    with pytest.raises(InvalidInput, match="no active storage pool 'no-such-pool'"):
        operations.CREATE.start(
            user=admin_user, name="nowhere", image=qcow2_image, flavor=tiny_flavor, host=host
        )
    assert not Instance.objects.exists()
