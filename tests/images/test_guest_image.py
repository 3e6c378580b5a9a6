"""The Debian guest image of `make guest-image` boots on a lab host and cloud-init takes the
identity from a NoCloud seed: the guest agent answers, the hostname is the seed's, the key is
in the default user's authorized_keys, and cloud-init ends without errors.

Straight through virsh, no panel: this proves the image (and the seed format) that the
panel's end-to-end test builds on. Under TCG (a real kernel does not run usably under this
machine's KVM), so it takes about a minute, or two on a busy machine; one such test only.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from instances.seed import build_seed_iso
from lab import LabError, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

BOOT_DEADLINE = 240.0  # seconds from start to cloud-init done; 50-110 s measured under TCG


def domain_xml(name: str, disk: str, seed: str, serial_log: str) -> str:
    # Type qemu (TCG); the agent's virtio-serial channel; a user-mode NIC so DHCP answers
    # at once without a host network (nothing here connects to the guest's address).
    # The seed cdrom on virtio-scsi: Debian's cloud kernel has no AHCI driver, so it never
    # sees a SATA cdrom (and cloud-init, finding no seed, disables itself).
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{seed}'/>
      <target dev='sda' bus='scsi'/>
      <readonly/>
    </disk>
    <controller type='scsi' model='virtio-scsi'/>
    <interface type='user'><model type='virtio'/></interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='pty'><log file='{serial_log}'/></serial>
    <console type='pty'/>
  </devices>
</domain>"""


class Agent:
    """The guest agent of one domain, through `virsh qemu-agent-command`."""

    def __init__(self, uri: str, domain: str):
        self.uri, self.domain = uri, domain

    def command(self, execute: str, **arguments) -> dict | None:
        """The command's return value; None while the agent does not answer."""
        message = {"execute": execute, **({"arguments": arguments} if arguments else {})}
        proc = virsh(
            self.uri, "qemu-agent-command", self.domain, "--timeout", "10",
            json.dumps(message), check=False, timeout=30,
        )  # fmt: skip
        return json.loads(proc.stdout)["return"] if proc.returncode == 0 else None

    def run(self, path: str, *args: str, deadline: float) -> tuple[int, str]:
        """Run a program in the guest; its exit code and output."""
        started = self.command("guest-exec", path=path, arg=list(args), **{"capture-output": True})
        assert started is not None, f"guest-exec {path} got no answer"
        while time.monotonic() < deadline:
            status = self.command("guest-exec-status", pid=started["pid"])
            if status and status["exited"]:
                output = "".join(
                    base64.b64decode(status.get(key, "")).decode(errors="replace")
                    for key in ("out-data", "err-data")
                )
                return status["exitcode"], output
            time.sleep(1)
        pytest.fail(f"{path} {' '.join(args)} did not finish before the deadline")


@pytest.fixture
def ssh_public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode() + " probe@cloudpanel-tests"


@pytest.mark.timeout(1200)  # the first run on a machine builds the image (about 2 minutes)
def test_debian_image_boots_and_cloud_init_applies_the_seed(
    lab, debian_guest_image, ssh_public_key
):
    host = lab.hosts[1]  # the TCG-only host
    uri = host.uri_tcp
    name = f"guest-image-{uuid.uuid4().hex[:8]}"
    hostname = f"probe-{uuid.uuid4().hex[:6]}"
    disk, seed = f"{name}.qcow2", f"{name}-seed.iso"
    serial_log = f"/var/log/libvirt/qemu/{name}-serial.log"  # as the lab's libvirtd sees it
    # The panel's own ISO builder, so this also proves the seed format it writes.
    seed_iso = build_seed_iso(
        {
            "meta-data": f"instance-id: {uuid.uuid4()}\nlocal-hostname: {hostname}\n",
            "user-data": f"#cloud-config\nssh_authorized_keys:\n  - {ssh_public_key}\n",
        }
    )
    # The lab's pool seen from outside; libvirt picks the files up on refresh.
    shutil.copyfile(debian_guest_image, host.pool_dir / disk)
    (host.pool_dir / seed).write_bytes(seed_iso)
    virsh(uri, "pool-refresh", "default")
    xml_path = host.base_dir / f"{name}.xml"
    xml_path.write_text(
        domain_xml(name, f"{host.pool_path}/{disk}", f"{host.pool_path}/{seed}", serial_log)
    )
    host.qemu_log_dir.mkdir(parents=True, exist_ok=True)  # libvirt makes it only later
    agent = Agent(uri, name)
    try:
        virsh(uri, "create", str(xml_path))
        started = time.monotonic()
        deadline = started + BOOT_DEADLINE

        while agent.command("guest-ping") is None:
            assert time.monotonic() < deadline, f"no guest-ping answer:\n{_serial(host, name)}"
            time.sleep(2)
        print(f"guest agent answered {time.monotonic() - started:.0f} s after start")

        # cloud-init sets the hostname during boot; the agent may be up before that.
        while (seen := (agent.command("guest-get-host-name") or {}).get("host-name")) != hostname:
            assert time.monotonic() < deadline, (
                f"hostname {seen!r}, never {hostname}:\n{_serial(host, name)}"
            )
            time.sleep(2)

        code, out = agent.run("/usr/bin/cloud-init", "status", "--wait", deadline=deadline)
        assert (code, out.splitlines()[-1:]) == (0, ["status: done"]), out
        code, keys = agent.run("/bin/cat", "/home/debian/.ssh/authorized_keys", deadline=deadline)
        assert code == 0 and ssh_public_key in keys.splitlines(), keys
        print(f"cloud-init done {time.monotonic() - started:.0f} s after start")
    finally:
        virsh(uri, "destroy", name, check=False)
        for volume in (disk, seed):
            virsh(uri, "vol-delete", volume, "--pool", "default", check=False)
        xml_path.unlink(missing_ok=True)
        try:
            virsh(uri, "pool-refresh", "default")
        except LabError:
            pass
    assert name not in virsh(uri, "list", "--all", "--name").stdout.split()
    assert not (host.pool_dir / disk).exists() and not (host.pool_dir / seed).exists()


def _serial(host, name: str) -> str:
    """The end of the guest's serial console, for a failure message."""
    path = host.qemu_log_dir / f"{name}-serial.log"
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError as exc:
        return f"(no serial log: {exc})"
