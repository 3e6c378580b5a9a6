"""The job runner: every path ends the job; conflicts, cancellation, reaping, API, sockets."""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from rest_framework.test import APIClient

from cloudpanel.jobs import services
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import job_handler
from cloudpanel.jobs.services import JobConflict, JobFailed, job_create, job_execute

pytestmark = pytest.mark.django_db

calls: list[str] = []


@job_handler("test.ok")
def _ok(job, ctx):
    ctx.progress(50, "half way")
    calls.append("ok")
    return {"answer": 42}


@job_handler("test.fail")
def _fail(job, ctx):
    raise JobFailed("the disk is full")


@job_handler("test.crash")
def _crash(job, ctx):
    raise RuntimeError("unexpected")


@job_handler("test.slow")
def _slow(job, ctx):
    raise SoftTimeLimitExceeded()


@job_handler("test.cancellable")
def _cancellable(job, ctx):
    services.job_cancel(job=Job.objects.get(id=job.id))  # someone asks while it runs
    ctx.progress(10, "next step")  # checks for cancellation
    return {"should": "not get here"}


reaped: list[int] = []


@job_handler("test.reapable", on_abandoned=lambda job: reaped.append(job.id))
def _reapable(job, ctx):
    return None


def _job(kind, target_id=1, **kw):
    return job_create(kind=kind, target_type="thing", target_id=target_id, enqueue=False, **kw)


def test_success_records_progress_log_and_result():
    job = _job("test.ok")
    assert job.status == "pending"
    job_execute(job.id)
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.progress == 100
    assert job.result == {"answer": 42}
    assert "half way" in job.log
    assert job.started_at and job.finished_at and job.worker


@pytest.mark.parametrize(
    "kind,error",
    [
        ("test.fail", "the disk is full"),
        ("test.crash", "unexpected"),
        ("test.slow", "Timed out"),
    ],
)
def test_every_failure_path_ends_the_job(kind, error):
    job = _job(kind)
    job_execute(job.id)
    job.refresh_from_db()
    assert job.status == "failed"
    assert error in job.error
    assert job.finished_at is not None


def test_running_job_honours_cancellation():
    job = _job("test.cancellable")
    job_execute(job.id)
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_pending_job_cancels_at_once_and_never_runs():
    calls.clear()
    job = _job("test.ok")
    services.job_cancel(job=job)
    job_execute(job.id)  # a message delivered after cancellation
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert calls == []


def test_second_exclusive_job_on_a_target_conflicts_until_the_first_ends():
    first = _job("test.ok", target_id=7)
    with pytest.raises(JobConflict) as info:
        _job("test.ok", target_id=7)
    assert info.value.running.id == first.id
    assert f"job {first.id}" in str(info.value)
    _job("test.ok", target_id=8)  # another target is free
    job_execute(first.id)
    _job("test.ok", target_id=7)  # free again once the first ended


def test_redelivered_message_for_finished_job_is_ignored():
    calls.clear()
    job = _job("test.ok")
    job_execute(job.id)
    job_execute(job.id)
    assert calls == ["ok"]


def test_reaper_fails_jobs_whose_worker_stopped_beating():
    stale = _job("test.reapable", target_id=1)
    fresh = _job("test.reapable", target_id=2)
    now = timezone.now()
    Job.objects.filter(id=stale.id).update(
        status="running", heartbeat_at=now - timedelta(minutes=5), worker="w1:123"
    )
    Job.objects.filter(id=fresh.id).update(status="running", heartbeat_at=now)
    assert services.job_reap_stale() == [stale.id]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "failed" and "stopped responding" in stale.error
    assert "w1:123" in stale.error
    assert fresh.status == "running"
    assert reaped == [stale.id]


def test_enqueue_happens_on_commit(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "job_enqueue", lambda job: sent.append(job.id))
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind="test.ok", target_type="thing", target_id=3)
        assert sent == []  # nothing reaches the broker before the row is committed
    assert sent == [job.id]


def test_jobs_api_lists_filters_and_hides_other_projects(api_client, member_user):
    from cloudpanel.projects.models import Membership, Project

    mine = Project.objects.create(name="mine")
    theirs = Project.objects.create(name="theirs")
    Membership.objects.create(project=mine, user=member_user)
    a = _job("test.ok", target_id=1, project=mine)
    b = _job("test.ok", target_id=2, project=theirs)
    job_execute(a.id)

    assert len(api_client.get("/api/v1/jobs/?status=succeeded").json()["results"]) == 1
    assert api_client.get("/api/v1/jobs/?status=pending").json()["results"][0]["id"] == b.id
    detail = api_client.get(f"/api/v1/jobs/{a.id}/").json()
    for key in ("id", "kind", "status", "progress", "step", "error", "target"):
        assert key in detail
    assert detail["target"] == {"type": "thing", "id": 1, "name": ""}

    member = APIClient()
    member.force_authenticate(member_user)
    ids = [j["id"] for j in member.get("/api/v1/jobs/").json()["results"]]
    assert ids == [a.id]
    assert member.get(f"/api/v1/jobs/{b.id}/").status_code == 404
    assert member.post(f"/api/v1/jobs/{b.id}/cancel/").status_code == 404

    response = api_client.post(f"/api/v1/jobs/{b.id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
