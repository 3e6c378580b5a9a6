"""Structured builders and readers for domain and snapshot XML.

Every value goes in as an element's text or attribute through ElementTree, which escapes it:
user input never becomes XML syntax.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from . import xmlutil

METADATA_NS = "https://cloudpanel.invalid/xmlns/instance/1"
ET.register_namespace("cloudpanel", METADATA_NS)
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
FIRMWARES = ("bios", "uefi")


@dataclass(frozen=True)
class DiskSpec:
    path: str
    format: str = "qcow2"  # qcow2 or raw
    device: str = "disk"  # disk or cdrom
    target: str = "vda"
    bus: str = "virtio"
    readonly: bool = False
    # A cdrom to boot from before the disk (an installer); a cloud-init seed is not.
    bootable: bool = False


@dataclass(frozen=True)
class NicSpec:
    mac: str
    network: str | None = None  # None: user-mode networking (no libvirt network)
    model: str = "virtio"


@dataclass(frozen=True)
class DomainSpec:
    name: str
    uuid: str
    vcpus: int
    memory_mib: int
    domain_type: str = "qemu"  # kvm where it really works
    arch: str = "x86_64"
    machine: str = "pc"
    disks: list[DiskSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    vnc_listen: str = "127.0.0.1"
    title: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # The QEMU guest agent's virtio-serial port: harmless when the guest runs no agent.
    guest_agent: bool = True
    firmware: str = "bios"  # bios (SeaBIOS) or uefi (OVMF, picked by libvirt)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        node.text = text
    return node


def build_domain(spec: DomainSpec) -> str:
    if spec.domain_type not in ("kvm", "qemu"):
        raise ValueError(f"unsupported domain type {spec.domain_type!r}")
    if spec.firmware not in FIRMWARES:
        raise ValueError(f"unsupported firmware {spec.firmware!r}")
    root = ET.Element("domain", type=spec.domain_type)
    _sub(root, "name", spec.name)
    _sub(root, "uuid", spec.uuid)
    if spec.title:
        # libvirt refuses newlines in titles
        _sub(root, "title", " ".join(spec.title.split()))
    if spec.metadata:
        meta = _sub(root, "metadata")
        inst = ET.SubElement(meta, f"{{{METADATA_NS}}}instance")
        for key, value in spec.metadata.items():
            ET.SubElement(inst, f"{{{METADATA_NS}}}{key}").text = str(value)
    _sub(root, "memory", str(int(spec.memory_mib)), unit="MiB")
    _sub(root, "currentMemory", str(int(spec.memory_mib)), unit="MiB")
    _sub(root, "vcpu", str(int(spec.vcpus)), placement="static")
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch=spec.arch, machine=spec.machine)
    if spec.firmware == "uefi":
        # libvirt picks an OVMF build from QEMU's firmware descriptors and gives the domain
        # its own NVRAM copy. Secure boot off: with enrolled keys OVMF refuses unsigned boot
        # loaders, and it needs SMM, which "pc" lacks (there libvirt skips those builds
        # anyway; the hint keeps a q35 machine from picking them first).
        os_el.set("firmware", "efi")
        wanted = _sub(os_el, "firmware")
        _sub(wanted, "feature", enabled="no", name="secure-boot")
        _sub(wanted, "feature", enabled="no", name="enrolled-keys")
    if any(d.device == "cdrom" and d.bootable for d in spec.disks):
        _sub(os_el, "boot", dev="cdrom")
    _sub(os_el, "boot", dev="hd")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")

    devices = _sub(root, "devices")
    if any(disk.bus == "scsi" for disk in spec.disks):
        # virtio-scsi, not the default LSI controller, which cloud kernels lack too.
        _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    for disk in spec.disks:
        el = _sub(devices, "disk", type="file", device=disk.device)
        driver = _sub(el, "driver", name="qemu", type=disk.format)
        if disk.device == "disk":
            # Zeroes and guest discards stay holes: thin disks stay thin, also when
            # copied to another host by a storage migration.
            driver.set("discard", "unmap")
            driver.set("detect_zeroes", "unmap")
        _sub(el, "source", file=disk.path)
        _sub(el, "target", dev=disk.target, bus=disk.bus)
        if disk.readonly or disk.device == "cdrom":
            _sub(el, "readonly")
    for nic in spec.nics:
        if nic.network:
            el = _sub(devices, "interface", type="network")
            _sub(el, "mac", address=nic.mac)
            _sub(el, "source", network=nic.network)
        else:
            el = _sub(devices, "interface", type="user")
            _sub(el, "mac", address=nic.mac)
        _sub(el, "model", type=nic.model)
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    if spec.guest_agent:
        # No source path: libvirt picks the socket and connects its agent client to it.
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes")
    graphics.set("listen", spec.vnc_listen)
    _sub(graphics, "listen", type="address", address=spec.vnc_listen)
    video = _sub(devices, "video")
    _sub(video, "model", type="vga")
    _sub(devices, "memballoon", model="virtio")
    return xmlutil.to_string(root)


def build_snapshot(name: str, description: str = "") -> str:
    root = ET.Element("domainsnapshot")
    _sub(root, "name", name)
    if description:
        _sub(root, "description", description)
    return xmlutil.to_string(root)


def set_resources(xml: str, *, vcpus: int, memory_mib: int) -> str:
    """The same definition with another vCPU count and memory size (for resize)."""
    root = xmlutil.parse(xml)
    for tag in ("memory", "currentMemory"):
        node = root.find(tag)
        if node is None:
            node = _sub(root, tag)
        node.text = str(int(memory_mib))
        node.attrib = {"unit": "MiB"}
    vcpu = root.find("vcpu")
    if vcpu is None:
        vcpu = _sub(root, "vcpu")
    vcpu.text = str(int(vcpus))
    vcpu.attrib.pop("current", None)
    return xmlutil.to_string(root)


@dataclass(frozen=True)
class DiskInfo:
    device: str
    target: str
    path: str
    format: str


@dataclass(frozen=True)
class NicInfo:
    mac: str
    type: str
    network: str | None


@dataclass(frozen=True)
class DomainXmlInfo:
    name: str
    uuid: str
    domain_type: str
    vcpus: int
    memory_mib: int
    disks: list[DiskInfo]
    nics: list[NicInfo]
    vnc_port: int | None
    vnc_listen: str
    title: str


def _memory_mib(node: ET.Element | None) -> int:
    if node is None or not node.text:
        return 0
    value = int(node.text)
    unit = (node.get("unit") or "KiB").lower()
    factor = {
        "b": 1,
        "bytes": 1,
        "kib": 1024,
        "k": 1024,
        "mib": 1024**2,
        "m": 1024**2,
        "gib": 1024**3,
        "g": 1024**3,
    }.get(unit, 1024)
    return value * factor // 1024**2


def parse_domain(xml: str) -> DomainXmlInfo:
    root = xmlutil.parse(xml)
    disks = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        path = ""
        if source is not None:
            path = source.get("file") or source.get("dev") or source.get("volume") or ""
        disks.append(
            DiskInfo(
                device=disk.get("device", "disk"),
                target=xmlutil.attr(disk, "target", "dev"),
                path=path,
                format=xmlutil.attr(disk, "driver", "type"),
            )
        )
    nics = [
        NicInfo(
            mac=xmlutil.attr(nic, "mac", "address"),
            type=nic.get("type", ""),
            network=xmlutil.attr(nic, "source", "network") or None,
        )
        for nic in root.findall("devices/interface")
    ]
    graphics = root.find("devices/graphics[@type='vnc']")
    port = None
    listen = ""
    if graphics is not None:
        try:
            port = int(graphics.get("port", "-1"))
        except ValueError:
            port = None
        if port is not None and port < 0:
            port = None
        listen = graphics.get("listen", "")
    return DomainXmlInfo(
        name=xmlutil.text(root, "name"),
        uuid=xmlutil.text(root, "uuid"),
        domain_type=root.get("type", ""),
        vcpus=int(xmlutil.text(root, "vcpu", "0") or 0),
        memory_mib=_memory_mib(root.find("memory")),
        disks=disks,
        nics=nics,
        vnc_port=port,
        vnc_listen=listen,
        title=xmlutil.text(root, "title"),
    )
