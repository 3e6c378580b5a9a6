"""Evacuation on the session lab: lab1's instances move to lab0 as children of one job.

lab0's vCPU ratio is set so that it has room for the two small instances and not for the
third (4 vCPUs): that one is listed with the reason and stays running on lab1."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import job_cancel
from cloudpanel.jobs.signals import job_changed
from hosts.models import Host
from hosts.operations import EVACUATE
from instances import operations
from instances.models import Instance
from instances.services import flavor_create
from tests.instances.conftest import dom_state, domain_names, run, run_ok

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


def provision(user, image, flavor, host, name) -> Instance:
    job = run_ok(
        operations.CREATE.start(user=user, name=name, image=image, flavor=flavor, host=host)
    )
    return Instance.objects.get(pk=job.target_id)


def cleanup(user, instances) -> None:
    for instance in instances:
        instance = Instance.objects.filter(pk=instance.pk).first()
        if instance is not None and instance.current_job_id is None:
            run(operations.DELETE.start(user=user, target=instance))


def test_evacuation_moves_what_can_move_and_reports_each(
    lab_hosts, admin_user, qcow2_image, tiny_flavor
):
    lab0, lab1 = lab_hosts
    # lab0 takes 3 vCPUs under its ratio: the two tiny instances fit, the big one does not.
    ratio = Decimal(3) / Decimal(lab0.capabilities["cpus"])
    lab0.cpu_allocation_ratio = ratio.quantize(Decimal("0.01"))
    lab0.save()
    big_flavor = flavor_create(name="wide", vcpus=4, ram_mib=64, disk_gib=1)
    made = []
    try:
        for name, flavor in (("ev-a", tiny_flavor), ("ev-b", tiny_flavor), ("ev-c", big_flavor)):
            made.append(provision(admin_user, qcow2_image, flavor, lab1, name))
        a, b, big = made

        job = EVACUATE.start(user=admin_user, target=lab1)
        job = run_ok(job)

        lab1.refresh_from_db()
        assert lab1.maintenance
        assert "put in maintenance by this evacuation" in job.result["maintenance"]
        lines = {line["name"]: line for line in job.result["instances"]}
        assert set(lines) == {"ev-a", "ev-b", "ev-c"}
        for moved in (a, b):
            line = lines[moved.name]
            assert line["action"] == "live-migrate" and line["to"] == "lab0", line
            assert line["status"] == "succeeded", line
            moved.refresh_from_db()
            assert moved.host_id == lab0.pk and moved.state == "running"
            assert dom_state(lab0, moved.domain_name) == "running"
            assert moved.domain_name not in domain_names(lab1)
        stayed = lines["ev-c"]
        assert stayed["status"] == "stayed" and stayed["job"] is None
        assert "vCPU" in stayed["reason"], stayed
        big.refresh_from_db()
        assert big.host_id == lab1.pk and big.state == "running"
        assert dom_state(lab1, big.domain_name) == "running"
        children = Job.objects.filter(parent=job)
        assert sorted(children.values_list("target_id", flat=True)) == sorted([a.pk, b.pk])
        assert set(children.values_list("kind", flat=True)) == {"instance.migrate"}
        assert job.result["moved"] == 2 and job.result["staying"] == 1

        client = Client()
        client.force_login(admin_user)
        page = client.get(f"/hosts/{lab1.pk}/").content.decode()
        assert f'data-evacuation="{job.pk}"' in page
        for instance in made:
            assert f'data-instance="{instance.pk}"' in page
        assert "stayed" in page and "succeeded" in page
    finally:
        cleanup(admin_user, made)


def test_cancelling_the_parent_stops_children_not_started(
    lab_hosts, admin_user, qcow2_image, tiny_flavor
):
    lab0, lab1 = lab_hosts
    made = []
    try:
        for name in ("cx-a", "cx-b"):
            instance = provision(admin_user, qcow2_image, tiny_flavor, lab1, name)
            run_ok(operations.POWER["stop"].start(user=admin_user, target=instance))
            made.append(instance)
        job = EVACUATE.start(user=admin_user, target=lab1, include_shutoff=True)
        assert job.params == {"include_shutoff": True}

        def cancel_after_first_child(sender, job, **kwargs):
            if job.parent_id == parent_id and job.status == Job.Status.SUCCEEDED:
                job_cancel(job=Job.objects.get(pk=parent_id))

        parent_id = job.pk
        job_changed.connect(cancel_after_first_child, dispatch_uid="test-evac-cancel")
        try:
            job = run(job)
        finally:
            job_changed.disconnect(dispatch_uid="test-evac-cancel")

        assert job.status == Job.Status.CANCELLED, (job.error, job.log)
        first, second = Job.objects.filter(parent=job).order_by("id")
        assert first.kind == second.kind == "instance.cold-migrate"
        assert first.status == Job.Status.SUCCEEDED
        assert second.status == Job.Status.CANCELLED and second.started_at is None
        moved, kept = (Instance.objects.get(pk=j.target_id) for j in (first, second))
        assert moved.host_id == lab0.pk and moved.state == "shutoff"
        assert kept.host_id == lab1.pk and kept.state == "shutoff" and kept.current_job is None
        assert kept.domain_name in domain_names(lab1)
        assert kept.domain_name not in domain_names(lab0)
        # The outcomes so far stay in the cancelled parent's result.
        statuses = {c["target"]["id"]: c["status"] for c in job.result["children"]}
        assert statuses == {moved.pk: "succeeded", kept.pk: "cancelled"}
        assert Host.objects.get(pk=lab1.pk).maintenance
    finally:
        cleanup(admin_user, made)
