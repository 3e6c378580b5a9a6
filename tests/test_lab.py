"""Smoke test of the lab package: a real two-host libvirt lab starts, restarts and stops."""

import re
import subprocess

import pytest

from lab import Lab, ensure_kvm_device, pid_alive


def virsh(uri: str, *args: str) -> str:
    return subprocess.run(
        ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def host_uuid(uri: str) -> str:
    return re.search(r"<host>\s*<uuid>([^<]+)</uuid>", virsh(uri, "capabilities")).group(1)


@pytest.mark.libvirt
def test_two_host_lab_starts_restarts_and_stops(tmp_path):
    # Host 0 uses KVM where the machine has it; host 1 never does.
    kvm = (ensure_kvm_device(), False)
    lab = Lab().start(2, kvm=kvm, base_dir=tmp_path / "lab")
    try:
        uuids = set()
        for host, has_kvm in zip(lab.hosts, kvm, strict=True):
            caps = virsh(host.uri_tcp, "capabilities")
            assert "<domain type='qemu'/>" in caps
            # The no-KVM host must not even offer KVM, so the panel sees TCG there.
            assert ("<domain type='kvm'/>" in caps) is has_kvm
            assert "default" in virsh(host.uri_unix, "pool-list", "--name").split()
            assert host.pool_dir.is_dir()
            uuids.add(host_uuid(host.uri_tcp))
        assert len(uuids) == 2  # distinct host UUIDs, or libvirt refuses to migrate

        host0 = lab[0]
        old_pid = host0.pids()["libvirtd"]
        host0.restart_libvirtd()
        assert host0.pids()["libvirtd"] != old_pid
        assert host_uuid(host0.uri_tcp) in uuids  # same config after the restart
        assert "default" in virsh(host0.uri_tcp, "pool-list", "--name").split()

        pids = [p for h in lab.hosts for group in h.pids().values() for p in group]
        assert len(pids) >= 4  # libvirtd + virtlogd per host
    finally:
        lab.stop()

    assert not any(pid_alive(p) for p in pids)
    assert not (tmp_path / "lab").exists()
    lab.stop()  # a second stop is harmless
