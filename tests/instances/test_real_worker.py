"""Jobs through a real Celery worker process: the API path end to end, and kill -9 mid-job."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import job_reap_stale
from images.models import ImageReplica
from instances.models import Instance

from .conftest import dom_state, domain_names, make_image, pool_volumes, run_ok

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 120, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def job_of(response) -> Job:
    return Job.objects.get(id=response.json()["id"])


def test_create_through_the_api_runs_on_a_real_worker(
    live_worker, api_client, lab_hosts, default_project, settings, tiny_flavor
):
    image = make_image(default_project, settings)
    host = lab_hosts[1]
    response = api_client.post(
        "/api/v1/instances/",
        {"name": "via-worker", "image": image.id, "flavor": tiny_flavor.id, "host": host.id},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert response["Location"] == f"http://testserver/api/v1/jobs/{response.json()['id']}/"
    job = job_of(response)
    wait_for(lambda: Job.objects.get(id=job.id).status in Job.FINISHED)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.worker and job.started_at >= job.created_at
    instance = Instance.objects.get(id=response.json()["instance"])
    assert instance.state == "running"
    assert dom_state(host, instance.domain_name) == "running"

    response = api_client.delete(f"/api/v1/instances/{instance.id}/")
    assert response.status_code == 202
    wait_for(lambda: not Instance.objects.filter(id=instance.id).exists())
    assert instance.domain_name not in domain_names(host)


def test_worker_killed_mid_provisioning_never_leaves_a_job_running(
    live_worker, lab_hosts, admin_user, default_project, settings, tiny_flavor
):
    from instances import operations
    from instances.models import Instance

    host = lab_hosts[1]
    # Random data, so the copy to the host takes long enough to be interrupted.
    image = make_image(default_project, settings, name="big-raw", fmt="raw", size_mib=256)
    with open(settings.IMAGE_STORE / image.file, "wb") as fh:
        for _ in range(256):
            fh.write(os.urandom(1024 * 1024))
    volumes_before = pool_volumes(host)

    job = operations.CREATE.start(
        user=admin_user, name="doomed", image=image, flavor=tiny_flavor, host=host
    )
    instance = Instance.objects.get(pk=job.target_id)
    wait_for(lambda: Job.objects.get(id=job.id).status == "running")
    os.killpg(live_worker.pid, signal.SIGKILL)
    live_worker.wait(timeout=10)

    job.refresh_from_db()
    assert job.status == "running"  # nobody is left to end it...
    # ...until the reaper runs (beat does every 30 s) and sees no heartbeat for a minute.
    assert job_reap_stale(now=timezone.now() + timedelta(minutes=2)) == [job.id]
    job.refresh_from_db()
    instance.refresh_from_db()
    assert job.status == "failed" and "stopped responding" in job.error
    assert instance.state == "error" and instance.current_job is None

    # Whatever the worker had created is tracked: by the instance or as an image replica.
    tracked = set(instance.volumes.values_list("name", flat=True)) | set(
        ImageReplica.objects.filter(host=host).values_list("volume", flat=True)
    )
    assert pool_volumes(host) - volumes_before <= tracked

    # And the instance can be deleted, cleaning up its domain and volumes.
    run_ok(operations.DELETE.start(user=admin_user, target=instance))
    assert not Instance.objects.filter(id=instance.id).exists()
    assert not any(name.startswith("cp-") for name in pool_volumes(host) - volumes_before)
    assert instance.domain_name not in domain_names(host)
