"""Rewrite a domain definition for another host: its disks' files moved (a cold migration
defines the domain anew there). Everything else stays: the placement checks that the target
can run it as it is."""

from __future__ import annotations

from . import domain_xml, xmlutil

# The panel's metadata keeps its prefix when the definition is written back.
_ = domain_xml.METADATA_NS


def disk_files(xml: str) -> list[str]:
    """The files the definition's disks (and CD-ROMs) read, in device order."""
    root = xmlutil.parse(xml)
    return [
        source.get("file")
        for source in (disk.find("source") for disk in root.findall("devices/disk"))
        if source is not None and source.get("file")
    ]


def relocate_domain_xml(xml: str, *, disk_paths: dict[str, str]) -> str:
    """The same definition with every file disk whose source is a key of `disk_paths`
    pointing at its value.

    A disk whose file is not in `disk_paths` is refused (ValueError): a definition naming a
    file left behind on the source would not start on the target.
    """
    root = xmlutil.parse(xml)
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        if source is None or source.get("file") is None:
            continue  # an empty CD-ROM drive
        old = source.get("file")
        if old not in disk_paths:
            raise ValueError(f"disk {old} is not among the moved volumes")
        source.set("file", disk_paths[old])
        # libvirt finds the backing chain again from the file itself.
        for backing in disk.findall("backingStore"):
            disk.remove(backing)
    return xmlutil.to_string(root)


__all__ = ["disk_files", "relocate_domain_xml"]
