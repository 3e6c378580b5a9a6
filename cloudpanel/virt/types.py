"""Plain dataclasses returned by the virt layer: no libvirt object leaves cloudpanel.virt."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class KsmInfo:
    """Kernel samepage merging as the host reports it (None where it does not)."""

    running: bool | None
    pages_shared: int | None
    pages_sharing: int | None
    saved_bytes: int | None


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    arch: str
    cpu_model: str
    cpu_vendor: str
    sockets: int
    cores: int
    threads: int
    cpus: int
    mhz: int
    memory_bytes: int
    hypervisor: str
    hypervisor_version: str
    libvirt_version: str
    kvm: bool
    kvm_reason: str | None  # why kvm is False, for admins (None when it is True)
    hw_virt: str | None
    domain_types: list[str]
    ksm: KsmInfo | None
    host_uuid: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StoragePoolInfo:
    name: str
    uuid: str
    type: str
    path: str
    active: bool
    autostart: bool
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    uuid: str
    active: bool
    autostart: bool
    bridge: str | None
    forward_mode: str | None
    cidr: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DomainSummary:
    name: str
    uuid: str
    state: str
    vcpus: int
    memory_bytes: int
    persistent: bool


@dataclass(frozen=True)
class GuestFilesystem:
    """One mounted filesystem as the guest agent reports it (sizes None when unknown)."""

    mountpoint: str
    name: str
    type: str
    used_bytes: int | None
    total_bytes: int | None


@dataclass(frozen=True)
class GuestInfo:
    """What the guest agent says about the guest's OS (fields None when it did not say)."""

    os_name: str | None
    os_version: str | None
    os_id: str | None
    kernel_release: str | None
    hostname: str | None
    timezone: str | None
    filesystems: list[GuestFilesystem] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GuestInterface:
    """A guest network interface and its addresses, as the agent reports them."""

    name: str
    mac: str | None
    addresses: list[str] = field(default_factory=list)  # "addr/prefix"
