"""A host whose libvirt offers KVM while QEMU may not open /dev/kvm (the lab's kvm_denied host).

libvirt's capabilities say kvm there, so only the panel's probe (a real kvm guest started
paused) can tell: the host must be reported as TCG, with the probe's reason for admins.
"""

import pytest

from hosts.services import host_create
from lab import virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def test_offered_but_unusable_kvm_is_reported_as_tcg_with_the_reason(
    kvm_denied_lab, api_client, client, admin_user
):
    lab_host = kvm_denied_lab[0]
    # The case itself: libvirt offers kvm here, and a kvm guest cannot start.
    assert "<domain type='kvm'/>" in virsh(lab_host.uri_tcp, "capabilities").stdout

    host = host_create(name="kvm-denied", uri=lab_host.uri_tcp)

    assert host.status == "online", host.last_error
    assert "kvm" in host.capabilities["domain_types"]
    assert host.kvm is False
    assert host.domain_type == "qemu"
    reason = host.capabilities["kvm_reason"]
    assert "Could not access KVM kernel module" in reason, reason

    body = api_client.get(f"/api/v1/hosts/{host.id}/").json()
    assert body["kvm"] is False and body["domain_type"] == "qemu"
    assert body["capabilities"]["kvm_reason"] == reason
    client.force_login(admin_user)
    page = client.get(f"/hosts/{host.id}/")
    assert page.status_code == 200
    assert "Could not access KVM kernel module" in page.content.decode()
