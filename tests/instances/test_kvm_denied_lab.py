"""A guest created on a host whose libvirt offers KVM that QEMU may not use runs under TCG."""

import xml.etree.ElementTree as ET

import pytest

from hosts.services import host_create
from instances import operations
from instances.models import Instance
from lab import virsh

from .conftest import dom_state, domain_names, run_ok

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def test_guest_on_kvm_denied_host_is_created_as_qemu_and_runs(
    kvm_denied_lab, admin_user, qcow2_image, tiny_flavor
):
    lab_host = kvm_denied_lab[0]
    host = host_create(name="kvm-denied", uri=lab_host.uri_tcp)
    job = operations.CREATE.start(
        user=admin_user, name="tcg-vm", image=qcow2_image, flavor=tiny_flavor, host=host
    )
    run_ok(job)
    instance = Instance.objects.get(pk=job.target_id)

    assert dom_state(host, instance.domain_name) == "running"
    live = ET.fromstring(virsh(lab_host.uri_tcp, "dumpxml", instance.domain_name).stdout)
    assert live.get("type") == "qemu"

    run_ok(operations.DELETE.start(user=admin_user, target=instance))
    assert instance.domain_name not in domain_names(host)
