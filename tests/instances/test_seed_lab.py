"""The NoCloud seed on the real libvirt lab (no OS in the guest needed): its volume row, the
read-only cdrom in the domain, the ISO in the pool parsed back, and delete or a failed
create leaving no seed behind."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml

from instances import operations
from instances.keypairs import keypair_create
from instances.models import Instance, Volume
from instances.seed import read_seed_iso
from lab import virsh

from .conftest import domain_names, make_image, pool_volumes, run, run_ok, uri_of
from .test_create_identity import cloud_init_image_fields

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


@pytest.fixture
def seeded_image(default_project, settings):
    return make_image(default_project, settings, **cloud_init_image_fields())


@pytest.fixture
def public_key(tmp_path) -> str:
    path = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (tmp_path / "id.pub").read_text().strip()


def seed_in_pool(host, name: str, tmp_path) -> tuple[str, dict[str, str]]:
    out = tmp_path / "seed.iso"
    virsh(uri_of(host), "vol-download", "--pool", "default", name, str(out))
    return read_seed_iso(out.read_bytes())


def test_create_with_identity_attaches_a_seed_and_delete_removes_it(
    lab_hosts, admin_user, seeded_image, tiny_flavor, public_key, tmp_path
):
    host = lab_hosts[1]
    key = keypair_create(user=admin_user, name="laptop", public_key=public_key)
    job = run_ok(
        operations.CREATE.start(
            user=admin_user,
            name="seeded",
            image=seeded_image,
            flavor=tiny_flavor,
            host=host,
            keypairs=[key.pk],
            hostname="web-1",
            password="not-in-clear",
            user_data="#cloud-config\nruncmd: [[touch, /root/marker]]\n",
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    seed_row = instance.volumes.get(role=Volume.Role.CDROM)
    assert seed_row.name == f"{instance.domain_name}-seed.iso"
    assert seed_row.state == Volume.State.READY and seed_row.format == "raw"
    assert seed_row.name in pool_volumes(host)

    dom = ET.fromstring(virsh(uri_of(host), "dumpxml", instance.domain_name).stdout)
    cdroms = [d for d in dom.findall("devices/disk") if d.get("device") == "cdrom"]
    assert len(cdroms) == 1
    cdrom = cdroms[0]
    assert cdrom.find("source").get("file") == seed_row.path
    assert cdrom.find("readonly") is not None
    assert cdrom.find("target").get("bus") == "scsi"  # cloud kernels have no AHCI
    assert cdrom.find("target").get("dev") == "sda"
    assert [b.get("dev") for b in dom.findall("os/boot")] == ["hd"]

    label, files = seed_in_pool(host, seed_row.name, tmp_path)
    assert label == "cidata"
    assert yaml.safe_load(files["meta-data"]) == {
        "instance-id": str(instance.uuid),
        "local-hostname": "web-1",
    }
    config = yaml.safe_load(files["user-data"])
    assert config["hostname"] == "web-1"
    assert config["ssh_authorized_keys"] == [public_key]
    assert config["runcmd"] == [["touch", "/root/marker"]]
    assert config["chpasswd"]["users"][0]["password"].startswith("$6$")
    assert "not-in-clear" not in files["user-data"]

    instance.refresh_from_db()
    run_ok(operations.DELETE.start(user=admin_user, target=instance))
    assert instance.domain_name not in domain_names(host)
    assert seed_row.name not in pool_volumes(host)
    assert not Volume.objects.filter(name=seed_row.name).exists()


def test_without_identity_there_is_no_seed(
    lab_hosts, admin_user, default_project, settings, tiny_flavor
):
    # An image that does not run cloud-init (once images can say so): nothing to tell it.
    fields = {"cloud_init": False} if "cloud_init" in cloud_init_image_fields() else {}
    qcow2_image = make_image(default_project, settings, name="no-ci", **fields)
    host = lab_hosts[1]
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="plain", image=qcow2_image, flavor=tiny_flavor, host=host
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    assert not instance.volumes.filter(role=Volume.Role.CDROM).exists()
    assert f"{instance.domain_name}-seed.iso" not in pool_volumes(host)
    run_ok(operations.DELETE.start(user=admin_user, target=instance))


def test_a_failed_create_rolls_the_seed_back(lab_hosts, admin_user, seeded_image, tiny_flavor):
    host = lab_hosts[1]
    # A network the host does not have: the domain is defined with the seed, then fails to
    # start, and everything made is removed.
    job = run(
        operations.CREATE.start(
            user=admin_user,
            name="doomed",
            image=seeded_image,
            flavor=tiny_flavor,
            host=host,
            network="no-such-network",
            hostname="doomed",
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    assert instance.state == Instance.State.ERROR, (job.status, job.error)
    assert "everything created was removed" in instance.state_reason
    assert f"{instance.domain_name}-seed.iso" not in pool_volumes(host)
    assert not instance.volumes.exists()


def test_an_iso_image_and_the_seed_are_two_cdroms(
    lab_hosts, admin_user, default_project, settings, tiny_flavor
):
    host = lab_hosts[1]
    iso = make_image(
        default_project, settings, name="installer", fmt="iso", **cloud_init_image_fields()
    )
    job = run_ok(
        operations.CREATE.start(
            user=admin_user, name="iso-vm", image=iso, flavor=tiny_flavor, host=host, hostname="i"
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    dom = ET.fromstring(virsh(uri_of(host), "dumpxml", instance.domain_name).stdout)
    cdroms = {
        d.find("target").get("dev"): d.find("source").get("file")
        for d in dom.findall("devices/disk")
        if d.get("device") == "cdrom"
    }
    seed_row = instance.volumes.get(role=Volume.Role.CDROM)
    assert cdroms["sdb"] == seed_row.path
    assert set(cdroms) == {"sda", "sdb"}
    instance.refresh_from_db()
    run_ok(operations.DELETE.start(user=admin_user, target=instance))
    assert seed_row.name not in pool_volumes(host)
