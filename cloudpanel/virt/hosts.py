"""What a host is and has: node info, capabilities, KVM usability, KSM, pools, networks."""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET

import libvirt

from . import xmlutil
from .pool import get_pool, translate
from .types import DomainSummary, HostInfo, KsmInfo, NetworkInfo, StoragePoolInfo

PAGE_SIZE = 4096  # KSM counts base pages

DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",  # blocked on I/O is still running to a person
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",  # shutting down, not yet off
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def _version_string(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1000)
    return f"{major}.{minor}.{micro}"


def _domain_types(caps: ET.Element, arch: str) -> list[str]:
    types: list[str] = []
    for guest in caps.findall("guest"):
        if xmlutil.attr(guest, "arch", "name") != arch:
            continue
        for domain in guest.findall("arch/domain"):
            kind = domain.get("type", "")
            if kind and kind not in types:
                types.append(kind)
    return types


def _hw_virt(caps: ET.Element) -> str | None:
    features = {f.get("name") for f in caps.findall("host/cpu/feature")}
    for flag in ("vmx", "svm"):
        if flag in features:
            return flag
    return None


def _ksm(conn: libvirt.virConnect) -> KsmInfo | None:
    try:
        params = conn.getMemoryParameters(0)
    except libvirt.libvirtError:
        return None  # the driver (or the host's kernel) has no KSM
    if not params:
        return None
    sharing = params.get("shm_pages_sharing")
    running = params.get("shm_run")
    if running is None:
        running = _read_int("/sys/kernel/mm/ksm/run") if conn.getURI() == "qemu:///system" else None
    return KsmInfo(
        running=bool(running) if running is not None else None,
        pages_shared=params.get("shm_pages_shared"),
        pages_sharing=sharing,
        saved_bytes=sharing * PAGE_SIZE if sharing is not None else None,
    )


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def kvm_unusable_reason(conn: libvirt.virConnect, arch: str, offered: list[str]) -> str | None:
    """Why a KVM guest does not really start here (None: it does), not just whether libvirt
    offers the type.

    libvirt offers 'kvm' whenever /dev/kvm exists, even when QEMU cannot open it, so we start
    a transient, paused, disk-less guest of type kvm and destroy it at once. The reason is
    kept for admins: "offered but unusable" needs fixing on the host (device permissions,
    qemu.conf cgroup_device_acl, ...), "not offered" usually does not.
    """
    if "kvm" not in offered:
        return f"libvirt offers no kvm domain type for {arch}"
    if conn.getType() != "QEMU":
        return f"the hypervisor is {conn.getType()}, not QEMU"
    root = ET.Element("domain", type="kvm")
    ET.SubElement(root, "name").text = f"cloudpanel-kvm-probe-{uuidlib.uuid4().hex[:12]}"
    ET.SubElement(root, "memory", unit="MiB").text = "16"
    ET.SubElement(root, "vcpu").text = "1"
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch=arch).text = "hvm"
    devices = ET.SubElement(root, "devices")
    ET.SubElement(devices, "memballoon", model="none")
    try:
        dom = conn.createXML(xmlutil.to_string(root), libvirt.VIR_DOMAIN_START_PAUSED)
    except libvirt.libvirtError as exc:
        message = (exc.get_error_message() or str(exc)).strip()
        return f"libvirt offers kvm, but a kvm guest did not start: {message}"
    try:
        dom.destroy()
    except libvirt.libvirtError:
        pass
    return None


def host_info(uri: str) -> HostInfo:
    def fetch(conn: libvirt.virConnect) -> HostInfo:
        caps = xmlutil.parse(conn.getCapabilities())
        model, _mem_mib, cpus, mhz, _nodes, sockets, cores, threads = conn.getInfo()
        arch = xmlutil.text(caps, "host/cpu/arch") or model
        offered = _domain_types(caps, arch)
        kvm_reason = kvm_unusable_reason(conn, arch, offered)
        return HostInfo(
            hostname=conn.getHostname(),
            arch=arch,
            cpu_model=xmlutil.text(caps, "host/cpu/model"),
            cpu_vendor=xmlutil.text(caps, "host/cpu/vendor"),
            sockets=int(sockets) * max(int(_nodes), 1),
            cores=int(cores),
            threads=int(threads),
            cpus=int(cpus),
            mhz=int(mhz),
            memory_bytes=_memory(conn),
            hypervisor=conn.getType(),
            hypervisor_version=_version_string(conn.getVersion()),
            libvirt_version=_version_string(conn.getLibVersion()),
            kvm=kvm_reason is None,
            kvm_reason=kvm_reason,
            hw_virt=_hw_virt(caps),
            domain_types=offered,
            ksm=_ksm(conn),
            host_uuid=xmlutil.text(caps, "host/uuid"),
        )

    return get_pool().call(uri, fetch)


def _memory(conn: libvirt.virConnect) -> int:
    # getInfo() reports MiB on QEMU; the node memory stats are exact bytes.
    try:
        return int(conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)["total"]) * 1024
    except (libvirt.libvirtError, KeyError):
        return int(conn.getInfo()[1]) * 1024 * 1024


def storage_pools(uri: str) -> list[StoragePoolInfo]:
    def fetch(conn: libvirt.virConnect) -> list[StoragePoolInfo]:
        pools = []
        for pool in conn.listAllStoragePools():
            root = xmlutil.parse(pool.XMLDesc())
            active = bool(pool.isActive())
            _state, capacity, allocation, available = pool.info() if active else (0, 0, 0, 0)
            pools.append(
                StoragePoolInfo(
                    name=pool.name(),
                    uuid=pool.UUIDString(),
                    type=root.get("type", ""),
                    path=xmlutil.text(root, "target/path"),
                    active=active,
                    autostart=bool(pool.autostart()),
                    capacity_bytes=int(capacity),
                    allocation_bytes=int(allocation),
                    available_bytes=int(available),
                )
            )
        return sorted(pools, key=lambda p: p.name)

    return get_pool().call(uri, fetch)


def networks(uri: str) -> list[NetworkInfo]:
    def fetch(conn: libvirt.virConnect) -> list[NetworkInfo]:
        result = []
        for net in conn.listAllNetworks():
            root = xmlutil.parse(net.XMLDesc())
            cidrs = []
            for ip in root.findall("ip"):
                address, prefix = ip.get("address"), ip.get("prefix")
                if address and not prefix and ip.get("netmask"):
                    prefix = str(sum(bin(int(o)).count("1") for o in ip.get("netmask").split(".")))
                if address:
                    cidrs.append(f"{address}/{prefix}" if prefix else address)
            result.append(
                NetworkInfo(
                    name=net.name(),
                    uuid=net.UUIDString(),
                    active=bool(net.isActive()),
                    autostart=bool(net.autostart()),
                    bridge=xmlutil.attr(root, "bridge", "name") or None,
                    forward_mode=xmlutil.attr(root, "forward", "mode") or None,
                    cidr=cidrs,
                )
            )
        return sorted(result, key=lambda n: n.name)

    return get_pool().call(uri, fetch)


def domain_state(dom: libvirt.virDomain) -> str:
    return DOMAIN_STATES.get(dom.state()[0], "nostate")


def list_domains(uri: str) -> list[DomainSummary]:
    def fetch(conn: libvirt.virConnect) -> list[DomainSummary]:
        result = []
        for dom in conn.listAllDomains():
            state, max_kib, _mem, vcpus, _cpu = dom.info()
            result.append(
                DomainSummary(
                    name=dom.name(),
                    uuid=dom.UUIDString(),
                    state=DOMAIN_STATES.get(state, "nostate"),
                    vcpus=int(vcpus),
                    memory_bytes=int(max_kib) * 1024,
                    persistent=bool(dom.isPersistent()),
                )
            )
        return result

    return get_pool().call(uri, fetch)


def ping(uri: str) -> None:
    """Raise HostUnreachable unless the host answers now."""
    get_pool().call(uri, lambda conn: conn.getLibVersion())


__all__ = [
    "host_info",
    "storage_pools",
    "networks",
    "list_domains",
    "ping",
    "translate",
    "domain_state",
]
