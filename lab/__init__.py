"""A lab of isolated libvirt hosts on one machine, for multi-host and migration tests.

Each lab host is its own ``virtlogd`` + ``libvirtd`` running in a private mount namespace
(``unshare --mount --propagation private``) in which the host's own directories are
bind-mounted over the paths libvirt uses::

    BASE/run/libvirt    -> /run/libvirt        (sockets, pid files of domains, status XML)
    BASE/etc/libvirt    -> /etc/libvirt        (a cleaned copy of the real config)
    BASE/lib/libvirt    -> /var/lib/libvirt    (holds the storage pool, see below)
    BASE/cache/libvirt  -> /var/cache/libvirt  (QEMU capabilities cache)
    BASE/log/libvirt    -> /var/log/libvirt    (libvirtd.log, qemu/<domain>.log)

Clients outside the namespace reach a host over TCP (``uri_tcp``) or through its unix socket
at ``BASE/run/libvirt/libvirt-sock`` (``uri_unix``).

Storage: every host's ``default`` pool has the same path as libvirt sees it,
``/var/lib/libvirt/images`` (``LabHost.pool_path``), which lives in a different real
directory per host (``LabHost.pool_dir``). Migration with non-shared storage
(``--copy-storage-all``) keeps the disk's path, and the destination pre-creates the disk in
the pool whose target path holds it, so every host needs a pool at the same path; a path
shared on the real filesystem would make the destination overwrite the source's disk.
Create volumes through libvirt (``vol-create-as``, ``createXML``), or from outside in
``pool_dir`` followed by a pool refresh; never write to ``pool_path`` from outside.

KVM: a host with ``kvm=False`` has /dev/kvm hidden (a mode-0 file mounted over it), so libvirt
offers only TCG. A host with ``kvm_denied=True`` (and ``kvm=True``) has libvirt offering kvm
while its guests may not open /dev/kvm: the case the panel's KVM probe is for.

Standard library only: it must run before (and without) Django or libvirt-python.
Test infrastructure, not part of the installed panel. Run as root. CLI:
``python -m lab start|stop|status --help`` (``make lab``, ``make lab-stop``).

Modules: ``host`` (LabHost), ``lab`` (Lab), ``config`` (libvirt config, bind mounts,
/dev/kvm), ``network`` (ports, bridges, the default network), ``processes`` (virsh, pids,
cgroups), ``__main__`` (the CLI).
"""

from .config import CAPS_CACHE, KVM_DEVICE, POOL_PATH, ensure_kvm_device
from .host import PORTS_PER_HOST, LabHost
from .lab import STATE_FILE, Lab
from .network import DEFAULT_PORT_BASE, NETWORK_MODES, find_port_base
from .processes import LabError, pid_alive, virsh

__all__ = [
    "CAPS_CACHE",
    "DEFAULT_PORT_BASE",
    "KVM_DEVICE",
    "NETWORK_MODES",
    "POOL_PATH",
    "PORTS_PER_HOST",
    "STATE_FILE",
    "Lab",
    "LabError",
    "LabHost",
    "ensure_kvm_device",
    "find_port_base",
    "pid_alive",
    "virsh",
]
