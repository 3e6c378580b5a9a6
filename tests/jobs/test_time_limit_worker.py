"""Celery's real soft time limit, on a real worker process: the job fails cleanly.

Celery puts the sender's time limits into each task message, and the worker applies those
(its own settings only when a message carries none). So the test sends the job with a soft
limit of two seconds and a hard one far off: only the soft limit can end the job in time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import TIMED_OUT, job_create
from cloudpanel.jobs.tasks import run_job

from . import worker_with_test_jobs
from .worker_with_test_jobs import OUTLIVES_ITS_TIME_LIMIT, QUICK

pytestmark = pytest.mark.django_db(transaction=True)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOFT_LIMIT_SECONDS = 2
HARD_LIMIT_SECONDS = 120  # beyond the waits below: a job ended by it fails this test


@pytest.fixture
def live_worker_program() -> list[str]:
    return [sys.executable, "-m", worker_with_test_jobs.__name__]


@pytest.fixture
def live_worker_env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO_ROOT)}  # this tree's code, wherever pytest was started


def _wait_for_status(job: Job, statuses, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.id} still {job.status}, waited for {statuses}")


def _send(kind: str) -> Job:
    job = job_create(kind=kind, target_type="thing", target_id=1, enqueue=False)
    run_job.apply_async(
        args=[job.id],
        task_id=job.celery_task_id,
        soft_time_limit=SOFT_LIMIT_SECONDS,
        time_limit=HARD_LIMIT_SECONDS,
    )
    return job


def test_the_jobs_task_has_a_soft_limit_below_its_hard_one():
    """What the settings give every job (CELERY_TASK_SOFT_TIME_LIMIT / _TIME_LIMIT): the soft
    limit comes first, so a job fails cleanly before the worker process is killed."""
    assert run_job.soft_time_limit and run_job.time_limit
    assert run_job.soft_time_limit < run_job.time_limit


def test_the_soft_time_limit_fails_a_job_on_a_real_worker(live_worker):
    job = _send(OUTLIVES_ITS_TIME_LIMIT)
    _wait_for_status(job, ["running"])
    _wait_for_status(job, Job.FINISHED)
    assert job.status == "failed", job.error
    assert job.error == TIMED_OUT and job.public_error == TIMED_OUT
    assert job.finished_at is not None
    assert job.progress == 1  # the handler never got to return

    # The soft limit interrupts the task, not the worker: the same worker takes the next job,
    # and the target is free again.
    assert live_worker.poll() is None
    after = _send(QUICK)
    _wait_for_status(after, Job.FINISHED)
    assert after.status == "succeeded", after.error
