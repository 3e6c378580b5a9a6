"""POST /api/v1/instances/{id}/migrate/ on the lab: 202 with the job and its Location, the
scheduler's choice, and the refusals (incompatible or maintenance target, unknown host,
tenants). The jobs are only queued here: the lab tests run them."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership, Project
from instances.models import Instance

from .conftest import provision

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def url(instance) -> str:
    return f"/api/v1/instances/{instance.pk}/migrate/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_migrate_api(lab_hosts, admin_user, member_user, django_user_model, api_client,
                     qcow2_image, tiny_flavor):  # fmt: skip
    lab0, lab1 = lab_hosts
    tcg = provision(admin_user, qcow2_image, tiny_flavor, lab1, name="tcg")
    kvm = provision(admin_user, qcow2_image, tiny_flavor, lab0, name="kvm")
    assert (tcg.host.domain_type, kvm.host.domain_type) == ("qemu", "kvm")

    # Refusals first (nothing is queued by them).
    answer = api_client.post(url(kvm), {"host": lab1.pk}, format="json")
    assert answer.status_code == 409, answer.content
    assert "TCG only" in answer.json()["detail"] and "lab1" in answer.json()["detail"]
    answer = api_client.post(url(kvm), {}, format="json")  # the scheduler finds none either
    assert answer.status_code == 409 and "No host can take" in answer.json()["detail"]

    lab0.maintenance = True
    lab0.save(update_fields=["maintenance"])
    answer = api_client.post(url(tcg), {"host": lab0.pk}, format="json")
    assert answer.status_code == 409 and "maintenance" in answer.json()["detail"]
    lab0.maintenance = False
    lab0.save(update_fields=["maintenance"])

    answer = api_client.post(url(tcg), {"host": 999999}, format="json")
    assert answer.status_code == 400 and "host" in answer.json()["errors"]
    answer = api_client.post(url(tcg), {"bandwidth_mib": 0}, format="json")
    assert answer.status_code == 400 and "bandwidth_mib" in answer.json()["errors"]

    # Tenants: a member of the project may not migrate (403); another project's user does
    # not even see the instance (404).
    Membership.objects.create(project=tcg.project, user=member_user, role="member")
    answer = client_for(member_user).post(url(tcg), {"host": lab0.pk}, format="json")
    assert answer.status_code == 403
    stranger = django_user_model.objects.create_user("bob", password="pw-bob-12345")
    Membership.objects.create(
        project=Project.objects.create(name="other"), user=stranger, role="member"
    )
    assert client_for(stranger).post(url(tcg), {}, format="json").status_code == 404
    assert not Job.objects.filter(kind="instance.migrate").exists()

    # Accepted: the scheduler picks the one compatible host.
    answer = api_client.post(url(tcg), {"auto_converge": True, "bandwidth_mib": 50}, format="json")
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert answer["Location"] == f"http://testserver/api/v1/jobs/{body['id']}/"
    assert (body["kind"], body["status"]) == ("instance.migrate", "pending")
    job = Job.objects.get(pk=body["id"])
    assert job.params == {
        "host": lab0.pk, "auto_converge": True, "post_copy": False, "bandwidth_mib": 50,
    }  # fmt: skip
    assert Instance.objects.get(pk=tcg.pk).current_job_id == job.pk
    # One migration at a time.
    assert api_client.post(url(tcg), {}, format="json").status_code == 409


def test_shut_off_instance_goes_to_cold_migration(lab_hosts, admin_user, api_client,
                                                  qcow2_image, tiny_flavor):  # fmt: skip
    from instances import operations

    lab0, lab1 = lab_hosts
    instance = provision(admin_user, qcow2_image, tiny_flavor, lab1, name="cold")
    from tests.instances.conftest import run_ok

    run_ok(operations.POWER["stop"].start(user=admin_user, target=instance))
    answer = api_client.post(url(instance), {"host": lab0.pk}, format="json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["kind"] == "instance.cold-migrate"


def test_migrate_card_on_the_instance_page(lab_hosts, admin_user, member_user, client,
                                           qcow2_image, tiny_flavor):  # fmt: skip
    lab0, lab1 = lab_hosts
    instance = provision(admin_user, qcow2_image, tiny_flavor, lab1, name="paged")
    page = f"/instances/{instance.pk}/"

    Membership.objects.create(project=instance.project, user=member_user, role="member")
    client.force_login(member_user)
    assert 'id="migration"' not in client.get(page).content.decode()
    client.post(f"/instances/{instance.pk}/migrate/", {"host": lab0.pk})
    assert not Job.objects.filter(kind="instance.migrate").exists()

    client.force_login(admin_user)
    html = client.get(page).content.decode()
    assert 'id="migration"' in html and "Let the scheduler choose" in html
    assert f'<option value="{lab0.pk}">lab0</option>' in html  # compatible: selectable
    answer = client.post(
        f"/instances/{instance.pk}/migrate/", {"host": lab0.pk, "bandwidth_mib": "20"}
    )
    assert answer.status_code == 302
    job = Job.objects.get(kind="instance.migrate")
    assert job.params["host"] == lab0.pk and job.params["bandwidth_mib"] == 20
