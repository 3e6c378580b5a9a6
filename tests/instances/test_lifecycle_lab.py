"""Provisioning and lifecycle on the real libvirt lab (lab0: KVM usable, lab1: TCG only)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from cloudpanel.jobs.models import Job
from instances import operations
from instances.models import Instance, Volume
from lab import virsh

from .conftest import dom_state, domain_names, pool_volumes, run, run_ok, uri_of

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def provision(user, image, flavor, host, **kwargs) -> Instance:
    job = operations.CREATE.start(
        user=user, name=kwargs.pop("name", "vm1"), image=image, flavor=flavor, host=host, **kwargs
    )
    run_ok(job)
    return Instance.objects.get(pk=job.target_id)


def _volumes(instance) -> list[dict]:
    return [v.as_dict() for v in instance.volumes.all()]


def live_xml(host, name: str) -> ET.Element:
    return ET.fromstring(virsh(uri_of(host), "dumpxml", name).stdout)


def action(user, instance, name, **params) -> Job:
    instance.refresh_from_db()
    job = run_ok(operations.POWER[name].start(user=user, target=instance, **params))
    instance.refresh_from_db()
    return job


def delete(user, instance) -> Job:
    instance.refresh_from_db()
    return run_ok(operations.DELETE.start(user=user, target=instance))


def test_provision_on_tcg_host_then_delete(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    host = lab_hosts[1]
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    assert instance.state == "running"
    assert instance.current_job is None
    assert dom_state(host, instance.domain_name) == "running"
    root = live_xml(host, instance.domain_name)
    assert root.get("type") == "qemu"
    assert root.findtext("uuid") == str(instance.uuid)
    assert instance.domain_name == f"cp-{instance.uuid}"
    assert root.find("devices/interface/mac").get("address") == instance.mac_address
    assert root.find("devices/disk/target").get("bus") == "virtio"
    assert root.find("devices/graphics").get("type") == "vnc"
    assert root.find("devices/graphics").get("autoport") == "yes"
    assert root.find("devices/serial") is not None
    disk = instance.volumes.first().name
    assert disk in pool_volumes(host)

    delete(admin_user, instance)
    assert not Instance.objects.filter(pk=instance.pk).exists()
    assert instance.domain_name not in domain_names(host)
    assert disk not in pool_volumes(host)


def test_provision_on_kvm_host_uses_kvm(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    host = lab_hosts[0]
    assert host.domain_type == "kvm", host.capabilities
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    assert dom_state(host, instance.domain_name) == "running"
    assert live_xml(host, instance.domain_name).get("type") == "kvm"
    delete(admin_user, instance)
    assert instance.domain_name not in domain_names(host)


def test_every_power_action(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    host = lab_hosts[1]
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    name = instance.domain_name

    action(admin_user, instance, "suspend")
    assert dom_state(host, name) == "paused" and instance.state == "paused"
    action(admin_user, instance, "resume")
    assert dom_state(host, name) == "running" and instance.state == "running"
    action(admin_user, instance, "reset")
    assert dom_state(host, name) == "running"
    action(admin_user, instance, "reboot")
    assert dom_state(host, name) == "running"
    # No OS answers ACPI: the fallback powers off after force_after seconds.
    job = action(admin_user, instance, "shutdown", force_after=1)
    assert job.result["forced"] is True
    assert dom_state(host, name) == "shut off" and instance.state == "shutoff"
    action(admin_user, instance, "start")
    assert dom_state(host, name) == "running" and instance.state == "running"
    action(admin_user, instance, "stop")
    assert dom_state(host, name) == "shut off" and instance.state == "shutoff"
    assert instance.current_job is None
    kinds = set(
        Job.objects.filter(target_type="instance", target_id=instance.pk).values_list(
            "kind", flat=True
        )
    )
    assert {"instance.create", "instance.stop", "instance.start", "instance.shutdown"} <= kinds
    delete(admin_user, instance)
    assert name not in domain_names(host)


def test_shutdown_without_force_fails_cleanly(
    lab_hosts, admin_user, qcow2_image, tiny_flavor, monkeypatch
):
    from instances.operations import power

    monkeypatch.setattr(power, "SHUTDOWN_TIMEOUT", 0.5)
    host = lab_hosts[1]
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    job = run(operations.POWER["shutdown"].start(user=admin_user, target=instance))
    assert job.status == "failed" and "did not shut down" in job.error
    instance.refresh_from_db()
    assert instance.state == "running" and instance.current_job is None
    assert "did not shut down" in instance.state_reason
    action(admin_user, instance, "stop")
    delete(admin_user, instance)


def test_snapshot_create_revert_delete(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    host = lab_hosts[1]
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    uri, name = uri_of(host), instance.domain_name

    job = run_ok(
        operations.TAKE_SNAPSHOT.start(
            user=admin_user, target=instance, name="before", description="a <b> & 'c'"
        )
    )
    snap = instance.snapshots.get(pk=job.result["snapshot"])
    assert snap.domain_state == "running"
    assert virsh(uri, "snapshot-list", name, "--name").stdout.split() == ["before"]
    desc = ET.fromstring(virsh(uri, "snapshot-dumpxml", name, "before").stdout)
    assert desc.findtext("description") == "a <b> & 'c'"

    action(admin_user, instance, "stop")
    assert dom_state(host, name) == "shut off"
    run_ok(operations.REVERT_SNAPSHOT.start(user=admin_user, target=instance, snapshot=snap))
    instance.refresh_from_db()
    assert dom_state(host, name) == "running" and instance.state == "running"

    run_ok(operations.DELETE_SNAPSHOT.start(user=admin_user, target=instance, snapshot=snap))
    assert virsh(uri, "snapshot-list", name, "--name").stdout.split() == []
    assert not instance.snapshots.exists()

    # Delete with snapshots left behind: the metadata goes with the domain.
    run_ok(operations.TAKE_SNAPSHOT.start(user=admin_user, target=instance, name="left"))
    delete(admin_user, instance)
    assert name not in domain_names(host)


def test_resize_while_shut_off(lab_hosts, admin_user, qcow2_image, tiny_flavor, small_flavor):
    from django.core.exceptions import ValidationError

    from cloudpanel.errors import Conflict

    host = lab_hosts[1]
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    with pytest.raises(Conflict):
        operations.RESIZE.start(user=admin_user, target=instance, flavor=small_flavor)
    action(admin_user, instance, "stop")
    run_ok(operations.RESIZE.start(user=admin_user, target=instance, flavor=small_flavor))
    instance.refresh_from_db()
    assert instance.flavor == small_flavor
    root = live_xml(host, instance.domain_name)
    assert root.findtext("vcpu") == "2"
    assert int(root.findtext("memory")) == 96 * 1024  # KiB
    vol = instance.volumes.first().name
    info = virsh(uri_of(host), "vol-info", "--bytes", vol, "--pool", "default").stdout
    assert str(2 * 1024**3) in info
    with pytest.raises(ValidationError):  # disks never shrink
        operations.RESIZE.start(user=admin_user, target=instance, flavor=tiny_flavor)
    action(admin_user, instance, "start")
    assert dom_state(host, instance.domain_name) == "running"
    delete(admin_user, instance)


def test_failed_start_rolls_back_volume_and_domain(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    host = lab_hosts[1]
    before_vols, before_doms = pool_volumes(host), domain_names(host)
    job = operations.CREATE.start(
        user=admin_user,
        name="doomed",
        image=qcow2_image,
        flavor=tiny_flavor,
        host=host,
        network="no-such-net",
    )
    job = run(job)
    assert job.status == "failed"
    assert "Provisioning failed" in job.error and "no-such-net" in job.error
    instance = Instance.objects.get(pk=job.target_id)
    assert instance.state == "error"
    assert "no-such-net" in instance.state_reason
    assert instance.current_job is None
    assert not Volume.objects.filter(instance=instance).exists()
    # The image replica may stay (it is shared); the instance's own disk must not.
    assert {v for v in pool_volumes(host) - before_vols if v.startswith("cp-")} == set()
    assert domain_names(host) == before_doms
    # The error row can still be deleted.
    delete(admin_user, instance)
    assert not Instance.objects.filter(pk=instance.pk).exists()


def test_second_job_conflicts_while_one_is_active(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    from cloudpanel.jobs.services import JobConflict

    host = lab_hosts[1]
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    pending = operations.POWER["stop"].start(user=admin_user, target=instance)
    instance.refresh_from_db()
    assert instance.current_job_id == pending.id
    with pytest.raises(JobConflict):
        operations.POWER["reboot"].start(user=admin_user, target=instance)
    run_ok(pending)
    delete(admin_user, instance)


def test_dead_worker_leaves_instance_in_error(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    from datetime import timedelta

    from django.utils import timezone

    from cloudpanel.jobs.services import job_reap_stale

    host = lab_hosts[1]
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    volumes = _volumes(instance)
    job = operations.POWER["stop"].start(user=admin_user, target=instance)
    # As if a worker took the job and died.
    long_ago = timezone.now() - timedelta(minutes=10)
    Job.objects.filter(pk=job.pk).update(
        status="running", started_at=long_ago, heartbeat_at=long_ago
    )
    assert job.pk in job_reap_stale()
    job.refresh_from_db()
    instance.refresh_from_db()
    assert job.status == "failed"
    assert instance.state == "error"
    assert "abandoned" in instance.state_reason
    assert instance.current_job is None
    assert _volumes(instance) == volumes
    # Delete still cleans everything up from the recorded volumes.
    delete(admin_user, instance)
    assert instance.domain_name not in domain_names(host)
    assert volumes[0]["name"] not in pool_volumes(host)


def test_reconcile_marks_vanished_domain_missing(lab_hosts, admin_user, qcow2_image, tiny_flavor):
    from instances.tasks import reconcile

    host = lab_hosts[1]
    instance = provision(admin_user, qcow2_image, tiny_flavor, host)
    uri, name = uri_of(host), instance.domain_name
    virsh(uri, "destroy", name)
    report = reconcile()
    instance.refresh_from_db()
    assert instance.pk in report["fixed"] and instance.state == "shutoff"

    virsh(uri, "undefine", name)
    report = reconcile()
    instance.refresh_from_db()
    assert instance.pk in report["missing"]
    assert instance.state == "missing" and "vanished" in instance.state_reason
    assert Instance.objects.filter(pk=instance.pk).exists()  # never silently deleted
    disk = instance.volumes.get().name
    delete(admin_user, instance)  # the volume still goes, found by its row
    assert disk not in pool_volumes(host)


def define_handmade_domain(host, tmp_path) -> tuple[str, str, str]:
    """A domain (with a 1 GiB volume) defined behind the panel's back: (name, uuid, volume)."""
    import uuid as uuidlib

    from cloudpanel.virt import domain_xml

    uri = uri_of(host)
    dom_uuid = str(uuidlib.uuid4())
    name = f"handmade-{dom_uuid[:8]}"
    vol = f"hand-made-{dom_uuid[:8]}.qcow2"
    virsh(uri, "vol-create-as", "default", vol, "1G", "--format", "qcow2")
    path = virsh(uri, "vol-path", vol, "--pool", "default").stdout.strip()
    xml = domain_xml.build_domain(
        domain_xml.DomainSpec(
            name=name,
            uuid=dom_uuid,
            vcpus=1,
            memory_mib=64,
            disks=[domain_xml.DiskSpec(path=path)],
        )
    )
    xml_file = tmp_path / "dom.xml"
    xml_file.write_text(xml)
    virsh(uri, "define", str(xml_file))
    return name, dom_uuid, vol


def remove_handmade_domain(host, name: str, vol: str) -> None:
    virsh(uri_of(host), "undefine", name, check=False)
    virsh(uri_of(host), "vol-delete", vol, "--pool", "default", check=False)


def test_unmanaged_domain_listed_and_adopted(lab_hosts, admin_user, api_client, tmp_path):
    host = lab_hosts[1]
    name, dom_uuid, vol = define_handmade_domain(host, tmp_path)
    try:
        resp = api_client.get(f"/api/v1/instances/unmanaged/?host={host.pk}")
        assert resp.status_code == 200, resp.content
        assert name in [d["name"] for d in resp.json()]

        resp = api_client.post(
            "/api/v1/instances/adopt/",
            {"host": host.pk, "domain": name},
            format="json",
        )
        assert resp.status_code == 201, resp.content
        data = resp.json()
        assert data["uuid"] == dom_uuid and data["state"] == "shutoff"
        instance = Instance.objects.get(pk=data["id"])
        assert instance.adopted
        assert (instance.flavor.vcpus, instance.flavor.ram_mib, instance.flavor.disk_gib) == (
            1,
            64,
            1,
        )
        assert instance.volumes.first().name == vol
        resp = api_client.get(f"/api/v1/instances/unmanaged/?host={host.pk}")
        assert name not in [d["name"] for d in resp.json()]
        delete(admin_user, instance)
        assert vol not in pool_volumes(host)
    finally:
        remove_handmade_domain(host, name, vol)


def test_reconcile_lists_unmanaged_domains_on_the_host_page_to_adopt(
    lab_hosts, admin_user, client, tmp_path
):
    from hosts.models import Host
    from instances.reconcile import reconcile_all

    host = lab_hosts[1]
    name, dom_uuid, vol = define_handmade_domain(host, tmp_path)
    try:
        assert reconcile_all().unmanaged >= 1
        host.refresh_from_db()
        assert name in [d["name"] for d in host.unmanaged_domains]
        client.force_login(admin_user)
        page = client.get(f"/hosts/{host.pk}/").content.decode()
        assert name in page and "/instances/adopt/" in page  # read from the database

        response = client.post("/instances/adopt/", {"host": host.pk, "domain": name})
        instance = Instance.objects.get(uuid=dom_uuid)
        assert response.status_code == 302 and response.url == f"/instances/{instance.pk}/"
        assert instance.adopted and instance.host == host
        assert name not in [d["name"] for d in Host.objects.get(pk=host.pk).unmanaged_domains]
        delete(admin_user, instance)
    finally:
        remove_handmade_domain(host, name, vol)


@pytest.mark.parametrize("fmt", ["raw", "iso"])
def test_provision_from_raw_and_iso(
    lab_hosts, admin_user, default_project, settings, tiny_flavor, fmt
):
    from .conftest import make_image

    host = lab_hosts[1]
    image = make_image(default_project, settings, name=f"img-{fmt}", fmt=fmt)
    instance = provision(admin_user, image, tiny_flavor, host, name=f"from-{fmt}")
    assert dom_state(host, instance.domain_name) == "running"
    root = live_xml(host, instance.domain_name)
    disk = root.find("devices/disk[@device='disk']")
    assert disk.find("driver").get("type") == "qcow2"
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert (cdrom is not None) == (fmt == "iso")
    info = virsh(
        uri_of(host), "vol-info", "--bytes", instance.volumes.first().name, "--pool", "default"
    ).stdout
    assert str(1024**3) in info  # the flavor's disk size
    delete(admin_user, instance)
    assert instance.domain_name not in domain_names(host)
