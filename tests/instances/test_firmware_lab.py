"""UEFI images boot on OVMF on the real lab; BIOS images keep SeaBIOS (no loader, no NVRAM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from instances.models import Instance

from .conftest import dom_state, domain_names, make_image, pool_volumes
from .test_lifecycle_lab import delete, live_xml, provision

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def outside_path(lab_host, path: str) -> Path:
    """Where a path under /var/lib/libvirt in a lab host's mount namespace really is."""
    return lab_host.base_dir / "lib/libvirt" / Path(path).relative_to("/var/lib/libvirt")


def test_uefi_image_boots_ovmf_with_its_own_nvram_and_delete_removes_it(
    lab, lab_hosts, admin_user, default_project, settings, tiny_flavor
):
    host = lab_hosts[1]
    image = make_image(default_project, settings, name="uefi-img", firmware="uefi")
    instance = provision(admin_user, image, tiny_flavor, host)
    assert instance.state == "running"
    assert dom_state(host, instance.domain_name) == "running"
    os_el = live_xml(host, instance.domain_name).find("os")
    # libvirt resolves firmware='efi' when it defines the domain: the live XML names the
    # OVMF build it picked, a pflash loader, and the NVRAM copy made from its template.
    loader = os_el.find("loader")
    assert loader is not None and "OVMF" in loader.text
    assert loader.get("type") == "pflash"
    # The pc machine has no SMM: the build libvirt picked must be one without secure boot.
    assert loader.get("secure") != "yes"
    nvram = outside_path(lab.hosts[1], os_el.findtext("nvram"))
    assert nvram.is_file()
    disk = instance.volumes.first().name

    delete(admin_user, instance)
    assert not Instance.objects.filter(pk=instance.pk).exists()
    assert instance.domain_name not in domain_names(host)
    assert disk not in pool_volumes(host)
    # libvirt keeps the NVRAM file unless the domain is undefined with the NVRAM flag.
    assert not nvram.exists()


def test_bios_image_has_no_loader_or_nvram(
    lab_hosts, admin_user, default_project, settings, tiny_flavor
):
    host = lab_hosts[1]
    image = make_image(default_project, settings, name="bios-img", firmware="bios")
    instance = provision(admin_user, image, tiny_flavor, host)
    assert dom_state(host, instance.domain_name) == "running"
    os_el = live_xml(host, instance.domain_name).find("os")
    assert os_el.get("firmware") is None
    assert os_el.find("loader") is None and os_el.find("nvram") is None
    delete(admin_user, instance)
    assert instance.domain_name not in domain_names(host)
