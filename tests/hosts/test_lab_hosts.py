"""Hosts on the real libvirt lab: capabilities, KVM vs TCG, reconnect, health transitions."""

import pytest

from cloudpanel import virt
from hosts.models import Host, HostEvent
from hosts.services import host_check_health, host_sync

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def test_lab_hosts_report_real_capabilities(api_client, lab_hosts):
    kvm_host, tcg_host = lab_hosts
    assert kvm_host.transport == "tcp" and tcg_host.transport == "unix"
    for host in lab_hosts:
        body = api_client.get(f"/api/v1/hosts/{host.id}/").json()
        assert body["status"] == "online", body["last_error"]
        caps = body["capabilities"]
        assert caps["hypervisor"] == "QEMU"
        assert caps["arch"] == "x86_64"
        assert caps["cpus"] >= 1 and caps["memory_bytes"] > 256 * 1024 * 1024
        assert caps["libvirt_version"].startswith(("9.", "1"))
        assert caps["hw_virt"] in (None, "vmx", "svm")
        assert caps["ksm"] is not None and "pages_sharing" in caps["ksm"]
        pools = {p["name"]: p for p in body["storage_pools"]}
        assert pools["default"]["active"] and pools["default"]["capacity_bytes"] > 0
        assert body["capacity"]["disk_bytes"]["physical"] == pools["default"]["capacity_bytes"]
        assert any(n["name"] == "default" for n in body["networks"])
    # Host 0 may open /dev/kvm, host 1 has it hidden: the panel tells them apart by trying.
    assert api_client.get(f"/api/v1/hosts/{kvm_host.id}/").json()["kvm"] is True
    assert api_client.get(f"/api/v1/hosts/{kvm_host.id}/").json()["domain_type"] == "kvm"
    tcg = api_client.get(f"/api/v1/hosts/{tcg_host.id}/").json()
    assert tcg["kvm"] is False and tcg["domain_type"] == "qemu"
    assert "kvm" not in tcg["capabilities"]["domain_types"]


def test_pool_reconnects_after_libvirtd_restart(lab, lab_hosts):
    host = lab_hosts[0]
    pool = virt.get_pool()
    before = pool.get(host.uri)
    opened = pool.opened
    lab.hosts[0].restart_libvirtd()
    # The old socket is dead; the next call reopens transparently and answers.
    domains = virt.list_domains(host.uri)
    assert isinstance(domains, list)
    assert pool.get(host.uri) is not before
    assert pool.opened == opened + 1
    host_sync(host=host)
    assert host.status == Host.Status.ONLINE


def test_stopped_libvirtd_goes_offline_then_back_online(lab, lab_hosts):
    host = lab_hosts[1]
    lab.hosts[1].stop_libvirtd()
    try:
        host_check_health(host=host)
        assert host.status == Host.Status.OFFLINE
        assert "libvirt" in host.last_error.lower()
    finally:
        lab.hosts[1].start_libvirtd()
    host_check_health(host=host)
    assert host.status == Host.Status.ONLINE
    steps = list(HostEvent.objects.filter(host=host).order_by("id").values_list("to_status"))
    assert steps[-2:] == [("offline",), ("online",)]
