"""A tenant's real provisioning and delete jobs on the libvirt lab: what the handlers really
log stays with admins; the tenant's API answers and pages name no host, URI, pool or path."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from cloudpanel.projects.models import Membership
from instances import operations
from instances.models import Instance

from .conftest import run_ok

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def _secrets(host, instance) -> list[bytes]:
    volume = instance.volumes.first()
    values = [host.name, host.uri, volume.path, volume.name, instance.domain_name]
    values += [p["path"] for p in host.storage_pools if p.get("path")]
    return [v.encode() for v in values if v]


def test_tenant_sees_no_infrastructure_of_real_jobs(
    lab_hosts, member_user, admin_user, default_project, qcow2_image, tiny_flavor
):
    Membership.objects.create(project=default_project, user=member_user)
    create_job = operations.CREATE.start(
        user=member_user, name="tenant-vm", image=qcow2_image, flavor=tiny_flavor
    )
    create_job = run_ok(create_job)
    instance = Instance.objects.get(pk=create_job.target_id)
    host = instance.host
    assert host.name in create_job.log  # the real lines name the host: admins read them
    secrets = _secrets(host, instance)

    api = APIClient()
    api.force_authenticate(member_user)
    pages = Client()
    pages.force_login(member_user)
    answers = {
        url: api.get(url)
        for url in (
            "/api/v1/instances/",
            f"/api/v1/instances/{instance.id}/",
            "/api/v1/jobs/",
            f"/api/v1/jobs/{create_job.id}/",
        )
    }
    for url in ("/", "/instances/", f"/instances/{instance.id}/", f"/jobs/{create_job.id}/"):
        answers[url] = pages.get(url)
    for url, response in answers.items():
        assert response.status_code == 200, url
        for secret in secrets:
            assert secret not in response.content, f"{secret!r} leaked in {url}"
    body = api.get(f"/api/v1/jobs/{create_job.id}/").json()
    assert "Defining the virtual machine" in body["log"] and "succeeded" in body["log"]

    delete_job = run_ok(operations.DELETE.start(user=member_user, target=instance))
    response = api.get(f"/api/v1/jobs/{delete_job.id}/")
    for secret in secrets:
        assert secret not in response.content
    assert "Deleting disk 1" in response.json()["log"]

    admin = APIClient()
    admin.force_authenticate(admin_user)
    assert host.name.encode() in admin.get(f"/api/v1/jobs/{create_job.id}/").content
