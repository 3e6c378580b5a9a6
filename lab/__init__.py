"""A lab of isolated libvirt hosts on one machine (test infrastructure): see lab.host."""

from .host import (
    CAPS_CACHE,
    DEFAULT_PORT_BASE,
    KVM_DEVICE,
    NETWORK_MODES,
    POOL_PATH,
    PORTS_PER_HOST,
    STATE_FILE,
    Lab,
    LabError,
    LabHost,
    ensure_kvm_device,
    find_port_base,
    pid_alive,
    virsh,
)

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
