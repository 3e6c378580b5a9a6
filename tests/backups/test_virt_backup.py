"""cloudpanel.virt.backup against libvirt's test driver (real libvirt code, no daemon)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from cloudpanel.virt import backup as vbackup

URI = "test:///default"


def test_backup_xml_names_each_target_file_and_leaves_the_rest_out():
    root = ET.fromstring(vbackup.backup_xml({"vda": "/pool/a b&c.qcow2"}, ["vda", "sda"]))
    assert root.tag == "domainbackup" and root.get("mode") == "push"
    vda, sda = root.findall("disks/disk")
    assert (vda.get("name"), vda.get("backup"), vda.get("type")) == ("vda", "yes", "file")
    assert vda.find("target").get("file") == "/pool/a b&c.qcow2"
    assert vda.find("driver").get("type") == "qcow2"
    assert (sda.get("name"), sda.get("backup")) == ("sda", "no")


def test_a_host_without_the_backup_api_is_told_apart():
    # The test driver offers no domain capabilities and refuses virDomainBackupBegin.
    assert vbackup.push_supported(URI, "test") is False
    with pytest.raises(vbackup.PushUnsupported):
        vbackup.push_backup(URI, "test", {"vda": "/nowhere.qcow2"})


def test_source_disks_are_the_domains_writable_file_disks():
    (disk,) = vbackup.source_disks(URI, "test")
    assert disk.target == "vda" and disk.path == "/guest/diskimage1"
