"""End to end on a real Linux guest, through the API: a Debian instance with a key pair,
user data and a hostname; the guest agent answers; the identity took effect inside; SSH
with the key works through a port forward on 127.0.0.1; the API shows the guest's address;
cloud-init ends without errors; a graceful shutdown of a guest that ignores ACPI, through
its agent; delete leaves no domain and no volume, seed included. It is also the proof of
`make guest-image`'s image and of the panel's NoCloud seed format (one real boot only).

Under TCG (a real kernel does not run usably under this machine's KVM): about two minutes.
Test traffic reaches the guest only through the agent and a QEMU port forward bound to
127.0.0.1 (the guest has a user-mode NIC: no libvirt network address is ever connected to).
"""

from __future__ import annotations

import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloudpanel.jobs.models import Job
from cloudpanel.virt import agent, storage
from hosts.services import host_sync, host_update
from images.intake import image_upload
from instances.models import Flavor, Instance, Volume
from lab import virsh

from .conftest import run_ok, uri_of

pytestmark = [pytest.mark.libvirt, pytest.mark.slow, pytest.mark.django_db]

BOOT_DEADLINE = 300.0  # seconds to the agent and to SSH; 50-110 s measured under TCG
MARKER = "/var/tmp/cloudpanel-user-data-marker"


def _until(what: str, probe, deadline: float):
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline:.0f} s")
        time.sleep(2)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ssh(key_file, port: int, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key_file), "-p", str(port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=10", "debian@127.0.0.1", command],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def key_files(tmp_path):
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "id_ed25519"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode() + " e2e@cloudpanel"


@pytest.mark.timeout(1500)  # the first run on a machine builds the image (about 2 minutes)
def test_a_debian_instance_gets_its_identity_and_answers_over_ssh(
    lab_hosts, api_client, admin_user, debian_guest_image, key_files
):
    private_key, public_key = key_files
    # The TCG host; no libvirt network named here: the guest gets a user-mode NIC, which
    # a QEMU port forward on 127.0.0.1 can reach.
    host = host_update(host=lab_hosts[1], default_network="no-network-here")
    host_sync(host=host)
    with open(debian_guest_image, "rb") as fh:
        image = image_upload(
            fileobj=fh, name="debian-12", disk_format="qcow2", user=admin_user,
            visibility="public", os_type="linux", cloud_init=True, default_user="debian",
        )  # fmt: skip
    flavor = Flavor.objects.create(name="deb", vcpus=1, ram_mib=1024, disk_gib=3)

    keypair = api_client.post(
        "/api/v1/keypairs/", {"name": "e2e", "public_key": public_key}, format="json"
    )
    assert keypair.status_code == 201, keypair.content
    # The marker, and a guest that ignores the power button (ACPI), as some do: the panel's
    # shutdown must then get it down through the guest agent, without forcing it off.
    user_data = (
        "#cloud-config\nwrite_files:\n"
        f"  - path: {MARKER}\n    content: written-by-user-data\n"
        "  - path: /etc/systemd/logind.conf.d/ignore-power-key.conf\n"
        "    content: |\n      [Login]\n      HandlePowerKey=ignore\n"
        "runcmd:\n  - [systemctl, restart, systemd-logind]\n"
    )
    created = api_client.post(
        "/api/v1/instances/",
        {"name": "deb1", "image": image.pk, "flavor": flavor.pk, "host": host.pk,
         "keypairs": [keypair.json()["id"]], "user_data": user_data, "hostname": "e2e-guest"},
        format="json",
    )  # fmt: skip
    assert created.status_code == 202, created.content
    started = time.monotonic()
    run_ok(Job.objects.get(pk=created.json()["id"]))
    instance = Instance.objects.get(pk=created.json()["instance"])
    uri, name = uri_of(host), instance.domain_name
    seed = instance.volumes.get(role=Volume.Role.CDROM)

    # 2. The agent answers, as the API says.
    def guest():
        body = api_client.get(f"/api/v1/instances/{instance.pk}/guest/").json()
        return body if body["agent"] == "answers" else None

    info = _until("the guest agent", guest, BOOT_DEADLINE)
    agent_after = time.monotonic() - started

    # 3. Inside the guest, through the agent: hostname, key, user data.
    def hostname():
        return guest()["hostname"] == "e2e-guest"

    _until("the hostname from the seed", hostname, BOOT_DEADLINE)

    def read(path):
        try:
            return agent.guest_read_file(uri, name, path).decode()
        except Exception:
            return ""  # not written yet (cloud-init still running)

    keys = _until("the key in authorized_keys",
                  lambda: read("/home/debian/.ssh/authorized_keys"), BOOT_DEADLINE)  # fmt: skip
    assert public_key.split()[1] in keys
    assert _until("the user data's marker", lambda: read(MARKER), BOOT_DEADLINE).strip() == (
        "written-by-user-data"
    )

    # 4. SSH with the key, through a forward QEMU itself listens for on 127.0.0.1.
    port = _free_port()
    forward = virsh(uri, "qemu-monitor-command", name, "--hmp",
                    f"hostfwd_add hostnet0 tcp:127.0.0.1:{port}-:22")  # fmt: skip
    assert "error" not in forward.stdout.lower(), forward.stdout
    def logged_in():
        proc = _ssh(private_key, port, "hostname")
        return proc if proc.returncode == 0 else None

    login = _until("SSH", logged_in, BOOT_DEADLINE)
    assert login.stdout.strip() == "e2e-guest"
    ssh_after = time.monotonic() - started

    # 5. The guest's address in the API (the agent's, QEMU user networking's 10.0.2.15).
    assert "10.0.2.15" in info["ip_addresses"]
    detail = api_client.get(f"/api/v1/instances/{instance.pk}/").json()
    assert "10.0.2.15" in detail["ip_addresses"]

    # Through the agent, too: a user's password set at once (never stored), and a snapshot
    # with the filesystems frozen.
    def shadow_hash():
        line = next(x for x in read("/etc/shadow").splitlines() if x.startswith("debian:"))
        return line.split(":")[1]

    before = shadow_hash()
    changed = api_client.post(f"/api/v1/instances/{instance.pk}/password/",
                              {"user": "debian", "password": "e2e-Pass-123"}, format="json")
    assert changed.status_code == 204, changed.content
    assert shadow_hash() != before and shadow_hash().startswith("$")
    snap = api_client.post(f"/api/v1/instances/{instance.pk}/snapshots/",
                           {"name": "frozen", "quiesce": True}, format="json")  # fmt: skip
    assert snap.status_code == 202, snap.content
    snap_job = run_ok(Job.objects.get(pk=snap.json()["id"]))
    assert snap_job.result["quiesced"] is True
    # Thawed again: the guest writes.
    assert _ssh(private_key, port, "touch /tmp/still-writable && echo ok").stdout.strip() == "ok"

    # 6. A graceful shutdown: ACPI is ignored, the agent's shutdown works, nothing forced.
    # cloud-init ended without errors (runcmd, logind restarted, included).
    status = _until("cloud-init done", lambda: _ssh(
        private_key, port, "cloud-init status --wait").stdout.strip(), BOOT_DEADLINE)  # fmt: skip
    assert status.splitlines()[-1:] == ["status: done"], status
    shutdown = api_client.post(
        f"/api/v1/instances/{instance.pk}/shutdown/", {"force_after": 20}, format="json"
    )
    assert shutdown.status_code == 202, shutdown.content
    job = run_ok(Job.objects.get(pk=shutdown.json()["id"]))
    assert job.result == {"state": "shutoff", "forced": False, "agent": True}, job.log

    # 7. Delete: no domain, no volume, seed included.
    deleted = api_client.delete(f"/api/v1/instances/{instance.pk}/")
    assert deleted.status_code == 202
    run_ok(Job.objects.get(pk=deleted.json()["id"]))
    assert name not in virsh(uri, "list", "--all", "--name").stdout.split()
    left = {v.name for v in storage.list_volumes(uri, host.default_pool)}
    assert not {n for n in left if n.startswith(name)}, left
    assert seed.name not in left and not Volume.objects.filter(instance_id=instance.pk).exists()
    print(f"\nagent answered after {agent_after:.0f} s, SSH after {ssh_after:.0f} s")
