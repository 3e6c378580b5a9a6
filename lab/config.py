"""What a lab host's libvirt sees: its config files, bind mounts and /dev/kvm."""

from __future__ import annotations

import grp
import json
import os
import shlex
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .host import LabHost

POOL_PATH = "/var/lib/libvirt/images"  # pool target as every lab host's libvirt sees it
# Pool 'shared': one directory of the lab's, mounted at this path in every host, so a disk
# there is on "shared storage" (visible to all hosts at the same path), as NFS would be.
SHARED_POOL_PATH = "/var/lib/libvirt/shared"
KVM_DEVICE = Path("/dev/kvm")
# libvirt's sockaddr_un path limit is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

# QEMU capabilities probed by earlier lab hosts, seeded into new ones: probing takes 4-9 s per
# lab and libvirt re-validates a seeded file (QEMU and libvirtd binaries, KVM usability,
# kernel, CPU) and probes again if it is stale. An empty CLOUDPANEL_LAB_CACHE disables it.
CAPS_CACHE = os.environ.get(
    "CLOUDPANEL_LAB_CACHE", str(Path.home() / ".cache/cloudpanel-lab/qemu-capabilities")
)

# (directory under the host's base_dir, path it is bind-mounted over inside the namespace)
BIND_MOUNTS = (
    ("run/libvirt", "/run/libvirt"),
    ("etc/libvirt", "/etc/libvirt"),
    ("lib/libvirt", "/var/lib/libvirt"),
    ("cache/libvirt", "/var/cache/libvirt"),
    ("log/libvirt", "/var/log/libvirt"),
)

# Definitions copied with /etc/libvirt that must not leak into a lab host: the real host's
# domains, networks (virbr0 would clash), pools, secrets, and their autostart links.
COPIED_DEFINITIONS = (
    "qemu/*.xml",
    "qemu/autostart/*",
    "qemu/networks/*.xml",
    "qemu/networks/autostart/*",
    "storage/*.xml",
    "storage/autostart/*",
    "secrets/*",
)


# The devices libvirt 9.0 lets a guest's QEMU open by default (qemu.conf cgroup_device_acl),
# less /dev/kvm. libvirt both fills each guest's private /dev and sets its devices cgroup
# from this list, while its capabilities probe runs QEMU outside either and still finds
# KVM usable: so `virsh capabilities` offers kvm, and a kvm guest fails to start ("Could
# not access KVM kernel module").
GUEST_DEVICES_WITHOUT_KVM = [
    "/dev/null",
    "/dev/full",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/ptmx",
]


def ensure_kvm_device() -> bool:
    """Give /dev/kvm the group and mode udev would (root:kvm 0660); return whether it exists.

    Without udev the node stays root:root 0600 and QEMU, running as libvirt-qemu (a member
    of group kvm), fails with "Could not access KVM kernel module: Permission denied", while
    libvirt's capabilities still offer the kvm domain type.
    """
    try:
        st = KVM_DEVICE.stat()
    except FileNotFoundError:
        return False
    kvm_gid = grp.getgrnam("kvm").gr_gid
    if st.st_gid != kvm_gid:
        os.chown(KVM_DEVICE, -1, kvm_gid)
    if st.st_mode & 0o660 != 0o660:
        os.chmod(KVM_DEVICE, (st.st_mode & 0o7777) | 0o660)
    return True


def edit_conf(path: Path, settings: dict[str, str | int | list]) -> None:
    """Set keys in a libvirt .conf file: drop existing lines for them (the first occurrence
    wins in libvirt's parser), then append the new values."""
    keep = []
    for line in path.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in settings:
            continue
        keep.append(line)
    keep.append("\n# cloudpanel lab host")
    for key, value in settings.items():
        keep.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(keep) + "\n")


def write_config(host: LabHost) -> None:
    """Copy the real /etc/libvirt to the host's etc/libvirt, cleaned and set up for it."""
    etc = host.base_dir / "etc/libvirt"
    shutil.copytree("/etc/libvirt", etc, symlinks=True)
    for pattern in COPIED_DEFINITIONS:
        for path in etc.glob(pattern):
            path.unlink()
    edit_conf(
        etc / "libvirtd.conf",
        {
            "listen_tls": 0,
            "listen_tcp": 1,
            "listen_addr": "127.0.0.1",
            "tcp_port": str(host.tcp_port),
            "auth_tcp": "none",
            # libvirt refuses to migrate between hosts with the same UUID.
            "host_uuid": str(uuid.uuid4()),
            "log_outputs": "3:file:/var/log/libvirt/libvirtd.log",
        },
    )
    qemu_conf: dict[str, str | int | list] = {}
    if not host.kvm:
        # libvirt gives each QEMU a private /dev and moves every mount found under /dev
        # into it; it cannot move our file mount over /dev/kvm ("Unable to move
        # ...kvm mount to /dev/kvm: Invalid argument"), so no-KVM hosts run QEMU
        # without that per-domain namespace.
        qemu_conf["namespaces"] = []
    if host.kvm_denied:
        qemu_conf["cgroup_device_acl"] = GUEST_DEVICES_WITHOUT_KVM
    edit_conf(
        etc / "qemu.conf",
        qemu_conf
        | {
            "vnc_listen": "127.0.0.1",
            "remote_display_port_min": host.vnc_ports[0],
            "remote_display_port_max": host.vnc_ports[1],
            "migration_port_min": host.migration_ports[0],
            "migration_port_max": host.migration_ports[1],
            # migration_address/migration_host would pin migrations to loopback, but
            # libvirt refuses a local address for either ("must not be the address of
            # the local machine"): migrate with --migrateuri tcp://127.0.0.1
            # --listen-address 127.0.0.1 (VIR_MIGRATE_PARAM_URI/_LISTEN_ADDRESS).
        },
    )


def namespace_script(host: LabHost, with_virtlogd: bool) -> str:
    """The shell script run under `unshare --mount` that starts the host's daemons."""
    q = shlex.quote
    lines = ["set -e"]
    for sub, target in BIND_MOUNTS:
        lines.append(f"mkdir -p {target}")
        lines.append(f"mount --bind {q(str(host.base_dir / sub))} {target}")
    if host.shared_dir:
        # After /var/lib/libvirt's own bind mount, over the mount point made in it.
        lines.append(f"mkdir -p {SHARED_POOL_PATH}")
        lines.append(f"mount --bind {q(str(host.shared_dir))} {SHARED_POOL_PATH}")
    if not host.kvm and KVM_DEVICE.exists():
        # Hide KVM from this namespace: an empty mode-0 file over /dev/kvm. libvirt's
        # probe of QEMU then finds no usable KVM, so `virsh capabilities` offers only
        # <domain type='qemu'/> and defining a type='kvm' domain fails ("Emulator ...
        # does not support virt type 'kvm'"), as on a host without KVM. (/dev/null over
        # it hides KVM too. Only the device's mode, shared by all namespaces, would not.)
        lines.append(f"mount --bind {q(str(host.base_dir / 'nokvm'))} {KVM_DEVICE}")
    if with_virtlogd:
        # Before libvirtd: QEMU's output goes through virtlogd's socket.
        lines.append(f"virtlogd -d -p {q(str(host.virtlogd_pidfile))}")
    lines.append(f"libvirtd -d --listen -p {q(str(host.libvirtd_pidfile))}")
    return "\n".join(lines)
