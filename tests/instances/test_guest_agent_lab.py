"""The guest agent's features on real lab guests without an OS (so without an agent): every
domain has the channel, and each feature answers 'unavailable' or a clear 409, never a 500.

(The answering-agent path needs a real OS guest: the Debian image's end-to-end test.)
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest
from django.test import Client
from rest_framework.test import APIClient

from cloudpanel.errors import Conflict
from cloudpanel.jobs.models import Job
from cloudpanel.projects import access
from cloudpanel.projects.models import Membership
from cloudpanel.virt import AgentUnavailable, agent
from instances import guest, operations, services
from instances.models import Instance
from lab import virsh

from .conftest import run, run_ok, uri_of

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]

SECRET = "Tr0ub4dor&3-never-logged"


@pytest.fixture
def tenant_vm(lab_hosts, member_user, default_project, qcow2_image, tiny_flavor) -> Instance:
    """A running no-OS guest of a project member, on the TCG lab host."""
    Membership.objects.create(project=default_project, user=member_user)
    job = run_ok(
        operations.CREATE.start(
            user=member_user, name="agentless", image=qcow2_image, flavor=tiny_flavor
        )
    )
    instance = Instance.objects.get(pk=job.target_id)
    assert instance.state == "running"
    yield instance
    instance.refresh_from_db()
    run(operations.DELETE.start(user=member_user, target=instance))


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_domain_has_the_agent_channel_and_libvirt_sees_no_agent(tenant_vm):
    uri = uri_of(tenant_vm.host)
    root = ET.fromstring(virsh(uri, "dumpxml", tenant_vm.domain_name).stdout)
    (target,) = root.findall("devices/channel/target")
    assert target.get("name") == "org.qemu.guest_agent.0"
    assert target.get("state") == "disconnected"  # nothing inside the guest opened it
    # The qemu driver's 'not connected' answer is our AgentUnavailable.
    with pytest.raises(AgentUnavailable, match="no guest agent is running") as exc:
        agent.agent_ping(uri, tenant_vm.domain_name)
    assert "not connected" in exc.value.detail
    assert agent.agent_answers(uri, tenant_vm.domain_name) is False


def test_domain_without_channel_is_agent_unavailable(lab_hosts):
    """A domain defined without the channel (adopted ones may be): 'not configured'."""
    from cloudpanel.virt import domain_xml, domains

    uri = uri_of(lab_hosts[1])
    virsh(uri, "vol-create-as", "default", "agent-nochan.qcow2", "16M", "--format", "qcow2")
    path = virsh(uri, "vol-path", "agent-nochan.qcow2", "--pool", "default").stdout.strip()
    spec = domain_xml.DomainSpec(
        name="agent-nochan",
        uuid="0f0e0d0c-0b0a-4000-8000-000000000001",
        vcpus=1,
        memory_mib=64,
        disks=[domain_xml.DiskSpec(path=path)],
        guest_agent=False,
    )
    domains.define_domain(uri, domain_xml.build_domain(spec))
    try:
        domains.start_domain(uri, "agent-nochan")
        with pytest.raises(AgentUnavailable, match="no guest agent channel") as exc:
            agent.guest_info(uri, "agent-nochan")
        assert "not configured" in exc.value.detail
        with pytest.raises(AgentUnavailable, match="no guest agent channel"):
            agent.set_user_password(uri, "agent-nochan", "root", SECRET)
    finally:
        domains.undefine_domain(uri, "agent-nochan")
        virsh(uri, "vol-delete", "agent-nochan.qcow2", "--pool", "default", check=False)


def test_guest_info_is_unavailable_in_service_api_and_page(tenant_vm, member_user):
    view = guest.instance_guest_info(user=member_user, instance=tenant_vm)
    assert view.agent == "unavailable" and not view.answers
    assert "no guest agent is running" in view.reason
    assert view.os_name is None and view.filesystems == [] and view.ip_addresses == []

    response = _api(member_user).get(f"/api/v1/instances/{tenant_vm.pk}/guest/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["agent"] == "unavailable"
    assert "no guest agent is running" in body["reason"]
    assert body["filesystems"] == [] and body["hostname"] is None

    pages = Client()
    pages.force_login(member_user)
    page = pages.get(f"/instances/{tenant_vm.pk}/")
    assert page.status_code == 200
    assert b"Guest agent not answering: OS details unavailable" in page.content
    assert b'data-guest-agent="unavailable"' in page.content


def test_guest_info_of_a_stopped_instance_is_unavailable(tenant_vm, member_user):
    tenant_vm.refresh_from_db()
    run_ok(operations.POWER["stop"].start(user=member_user, target=tenant_vm))
    view = guest.instance_guest_info(user=member_user, instance=tenant_vm)
    assert view.agent == "unavailable" and "not running" in view.reason


def test_other_tenants_get_no_guest_info(tenant_vm, django_user_model):
    stranger = django_user_model.objects.create_user("mallory", password="pw-mallory-1")
    response = _api(stranger).get(f"/api/v1/instances/{tenant_vm.pk}/guest/")
    assert response.status_code == 404


def test_set_password_without_agent_is_a_clear_409(tenant_vm, member_user, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"/api/v1/instances/{tenant_vm.pk}/password/"
    response = _api(member_user).post(url, {"user": "debian", "password": SECRET}, format="json")
    assert response.status_code == 409, response.content
    assert "Guest agent unavailable" in response.json()["detail"]
    assert SECRET.encode() not in response.content
    assert SECRET not in caplog.text
    assert SECRET not in str(list(Job.objects.values_list("params", "result", "log")))

    with pytest.raises(Conflict, match="Guest agent unavailable"):
        guest.instance_set_password(
            user=member_user, instance=tenant_vm, username="debian", password=SECRET
        )
    # Bad input is a 400 before any agent is asked.
    bad = _api(member_user).post(url, {"user": "a b", "password": ""}, format="json")
    assert bad.status_code == 400 and "password" in bad.json()["errors"]


def test_set_password_is_for_members_only(tenant_vm, member_user, django_user_model):
    viewer = django_user_model.objects.create_user("victor", password="pw-victor-1")
    Membership.objects.create(project=tenant_vm.project, user=viewer, role=Membership.Role.VIEWER)
    url = f"/api/v1/instances/{tenant_vm.pk}/password/"
    response = _api(viewer).post(url, {"user": "debian", "password": SECRET}, format="json")
    assert response.status_code == 403
    # ...while viewers may read the guest info.
    assert _api(viewer).get(f"/api/v1/instances/{tenant_vm.pk}/guest/").status_code == 200


def test_password_page_form_without_agent_shows_the_refusal(tenant_vm, member_user):
    pages = Client()
    pages.force_login(member_user)
    response = pages.post(
        f"/instances/{tenant_vm.pk}/password/",
        {"user": "debian", "password": SECRET},
        follow=True,
    )
    assert response.status_code == 200
    assert b"Guest agent unavailable" in response.content
    assert SECRET.encode() not in response.content


def test_quiesced_snapshot_without_agent_is_refused_at_once(tenant_vm, member_user):
    with pytest.raises(Conflict, match="cannot take a quiesced snapshot"):
        operations.TAKE_SNAPSHOT.start(user=member_user, target=tenant_vm, name="q1", quiesce=True)
    response = _api(member_user).post(
        f"/api/v1/instances/{tenant_vm.pk}/snapshots/",
        {"name": "q1", "quiesce": True},
        format="json",
    )
    assert response.status_code == 409, response.content
    assert "Guest agent unavailable" in response.json()["detail"]
    assert not tenant_vm.snapshots.exists()
    # Without quiesce the same snapshot is taken as before.
    tenant_vm.refresh_from_db()
    run_ok(operations.TAKE_SNAPSHOT.start(user=member_user, target=tenant_vm, name="plain"))
    assert list(tenant_vm.snapshots.values_list("name", flat=True)) == ["plain"]


def test_quiesced_snapshot_of_a_stopped_instance_needs_no_agent(tenant_vm, member_user):
    tenant_vm.refresh_from_db()
    run_ok(operations.POWER["stop"].start(user=member_user, target=tenant_vm))
    tenant_vm.refresh_from_db()
    job = run_ok(
        operations.TAKE_SNAPSHOT.start(user=member_user, target=tenant_vm, name="q2", quiesce=True)
    )
    assert job.params["quiesce"] is True
    assert tenant_vm.snapshots.filter(name="q2").exists()


def test_sync_state_without_agent_reads_leases_or_nothing(tenant_vm):
    tenant_vm.ip_addresses = ["203.0.113.9"]  # stale: must be replaced, not kept
    tenant_vm.save(update_fields=["ip_addresses"])
    services.instance_sync_state(instance=tenant_vm)
    tenant_vm.refresh_from_db()
    assert tenant_vm.state == "running"
    uri = uri_of(tenant_vm.host)
    from cloudpanel.virt import domains

    assert tenant_vm.ip_addresses == domains.interface_addresses(uri, tenant_vm.domain_name)
    assert "203.0.113.9" not in tenant_vm.ip_addresses


def test_shutdown_tries_the_agent_before_forcing(tenant_vm, member_user):
    tenant_vm.refresh_from_db()
    job = run_ok(
        operations.POWER["shutdown"].start(user=member_user, target=tenant_vm, force_after=1)
    )
    # A no-OS guest ignores ACPI and has no agent: the agent was asked, then it was forced.
    assert "No shutdown through the guest agent" in job.log
    assert job.result["forced"] is True
    tenant_vm.refresh_from_db()
    assert tenant_vm.state == "shutoff"


def test_tenant_sees_the_quiesce_flag_of_their_snapshot_job(tenant_vm, member_user):
    tenant_vm.refresh_from_db()
    run_ok(operations.POWER["stop"].start(user=member_user, target=tenant_vm))
    tenant_vm.refresh_from_db()
    job = run_ok(
        operations.TAKE_SNAPSHOT.start(user=member_user, target=tenant_vm, name="q3", quiesce=True)
    )
    assert access.job_params_for(member_user, job)["quiesce"] is True


def test_quiesce_box_on_the_page_without_agent_shows_the_refusal(tenant_vm, member_user):
    pages = Client()
    pages.force_login(member_user)
    response = pages.post(
        f"/instances/{tenant_vm.pk}/snapshots/", {"name": "q4", "quiesce": "on"}, follow=True
    )
    assert response.status_code == 200
    assert b"cannot take a quiesced snapshot" in response.content
    assert not tenant_vm.snapshots.exists()
