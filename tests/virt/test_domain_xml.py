"""The structured domain XML builder: user text stays text, the shape is what libvirt needs."""

import xml.etree.ElementTree as ET

from cloudpanel.virt import domain_xml as dx


def spec(**kw):
    base = dict(
        name="cp-1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        uuid="1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        vcpus=2,
        memory_mib=96,
        domain_type="kvm",
        disks=[dx.DiskSpec(path="/var/lib/libvirt/images/x.qcow2")],
        nics=[dx.NicSpec(mac="52:54:00:aa:bb:cc", network="default")],
        vnc_listen="0.0.0.0",
        title="evil</title><devices/>&amp;",
        metadata={"project": "p<1>"},
    )
    base.update(kw)
    return dx.DomainSpec(**base)


def test_build_domain_shape_and_escaping():
    root = ET.fromstring(dx.build_domain(spec()))
    assert root.get("type") == "kvm"
    assert root.findtext("title") == "evil</title><devices/>&amp;"
    assert len(root.findall("devices")) == 1
    assert root.find("memory").text == "96" and root.find("memory").get("unit") == "MiB"
    disk = root.find("devices/disk")
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    # Thin disks stay thin, also after a storage migration copies them.
    assert disk.find("driver").get("discard") == "unmap"
    assert disk.find("driver").get("detect_zeroes") == "unmap"
    nic = root.find("devices/interface")
    assert nic.get("type") == "network" and nic.find("source").get("network") == "default"
    assert nic.find("model").get("type") == "virtio"
    g = root.find("devices/graphics")
    assert (g.get("type"), g.get("port"), g.get("autoport"), g.get("listen")) == (
        "vnc",
        "-1",
        "yes",
        "0.0.0.0",
    )
    assert root.find("devices/video/model").get("type") == "vga"
    assert root.find("devices/serial") is not None and root.find("devices/console") is not None


def test_user_mode_nic_and_cdrom():
    root = ET.fromstring(
        dx.build_domain(
            spec(
                nics=[dx.NicSpec(mac="52:54:00:aa:bb:cc", network=None)],
                disks=[
                    dx.DiskSpec(path="/d.qcow2"),
                    dx.DiskSpec(
                        path="/i.iso",
                        format="raw",
                        device="cdrom",
                        target="sda",
                        bus="sata",
                        bootable=True,
                    ),
                ],
            )
        )
    )
    assert root.find("devices/interface").get("type") == "user"
    assert root.find("devices/interface/source") is None
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom.find("readonly") is not None
    assert [b.get("dev") for b in root.findall("os/boot")] == ["cdrom", "hd"]


def test_a_seed_cdrom_on_virtio_scsi_is_not_booted_from():
    # Cloud kernels have neither AHCI nor the LSI SCSI driver: the seed goes on virtio-scsi.
    root = ET.fromstring(
        dx.build_domain(
            spec(
                disks=[
                    dx.DiskSpec(path="/d.qcow2"),
                    dx.DiskSpec(path="/seed.iso", format="raw", device="cdrom", target="sdb",
                                bus="scsi", readonly=True),
                ],
            )
        )
    )  # fmt: skip
    controllers = root.findall("devices/controller[@type='scsi']")
    assert [c.get("model") for c in controllers] == ["virtio-scsi"]
    assert root.find("devices/disk[@device='cdrom']/target").attrib == {"dev": "sdb", "bus": "scsi"}
    assert [b.get("dev") for b in root.findall("os/boot")] == ["hd"]
    plain = ET.fromstring(dx.build_domain(spec(disks=[dx.DiskSpec(path="/d.qcow2")])))
    assert plain.find("devices/controller[@type='scsi']") is None


def test_snapshot_xml_and_set_resources():
    snap = ET.fromstring(dx.build_snapshot("s1", "<x> & y"))
    assert snap.findtext("name") == "s1" and snap.findtext("description") == "<x> & y"
    xml = dx.set_resources(dx.build_domain(spec()), vcpus=4, memory_mib=256)
    info = dx.parse_domain(xml)
    assert (info.vcpus, info.memory_mib) == (4, 256)
    assert info.nics[0].mac == "52:54:00:aa:bb:cc"
    assert info.disks[0].path == "/var/lib/libvirt/images/x.qcow2"


def test_unknown_domain_type_refused():
    import pytest

    with pytest.raises(ValueError):
        dx.build_domain(spec(domain_type="xen"))


def test_every_domain_gets_the_guest_agent_channel():
    channels = ET.fromstring(dx.build_domain(spec())).findall("devices/channel")
    assert len(channels) == 1
    channel = channels[0]
    assert channel.get("type") == "unix"
    # No source path: libvirt chooses the socket (a fixed path would collide across domains).
    assert channel.find("source") is None
    target = channel.find("target")
    assert target.attrib == {"type": "virtio", "name": "org.qemu.guest_agent.0"}


def test_guest_agent_channel_can_be_left_out():
    root = ET.fromstring(dx.build_domain(spec(guest_agent=False)))
    assert root.find("devices/channel") is None


def test_test_driver_accepts_the_agent_channel():
    import libvirt

    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(dx.build_domain(spec(domain_type="qemu", name="cp-agent-xml")))
        try:
            xml = ET.fromstring(dom.XMLDesc(0))
            names = [t.get("name") for t in xml.findall("devices/channel/target")]
            assert names == ["org.qemu.guest_agent.0"]
        finally:
            dom.undefine()
    finally:
        conn.close()


def test_uefi_asks_libvirt_for_ovmf_without_secure_boot():
    os_el = ET.fromstring(dx.build_domain(spec(firmware="uefi"))).find("os")
    assert os_el.get("firmware") == "efi"
    features = {f.get("name"): f.get("enabled") for f in os_el.findall("firmware/feature")}
    assert features == {"secure-boot": "no", "enrolled-keys": "no"}
    # libvirt chooses the loader and NVRAM paths itself.
    assert os_el.find("loader") is None and os_el.find("nvram") is None
    # libvirt's schema wants <firmware> after <type> and before <boot>.
    assert [c.tag for c in os_el] == ["type", "firmware", "boot"]
    assert os_el.find("type").get("machine") == "pc"


def test_bios_is_the_default_and_names_no_firmware():
    for root in (
        ET.fromstring(dx.build_domain(spec())),
        ET.fromstring(dx.build_domain(spec(firmware="bios"))),
    ):
        os_el = root.find("os")
        assert os_el.get("firmware") is None
        assert os_el.find("firmware") is None and os_el.find("loader") is None


def test_unknown_firmware_refused():
    import pytest

    with pytest.raises(ValueError, match="firmware"):
        dx.build_domain(spec(firmware="coreboot"))
