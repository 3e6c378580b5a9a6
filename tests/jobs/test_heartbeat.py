"""The heartbeat: a job whose handler blocks without reporting progress stays alive.

The reaper fails running jobs whose heartbeat is older than STALE_AFTER; while a handler is
busy in one long call (a libvirt stream, a download), only the runner's heartbeat thread
keeps the job's heartbeat fresh. Both periods are shortened here so that the job blocks for
several reaper periods in a few seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from cloudpanel.jobs import services
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import job_handler
from cloudpanel.jobs.services import job_create, job_execute, job_reap_stale

pytestmark = pytest.mark.django_db(transaction=True)

HEARTBEAT = 0.1  # seconds between beats
STALE = timedelta(seconds=1.5)  # 15 beats: a loaded machine may delay a few
BLOCKED_FOR = 3 * STALE  # the handler blocks for three reaper periods

release = threading.Event()


@job_handler("test.blocks_silently")
def _blocks_silently(job, ctx):
    # One long call with no ctx.progress(): nothing but the heartbeat touches the job.
    release.wait(timeout=120)
    return {"released": release.is_set()}


def _run_in_thread(job_id: int) -> threading.Thread:
    def run() -> None:
        try:
            job_execute(job_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=f"job-{job_id}", daemon=True)
    thread.start()
    return thread


def _wait_for(predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_a_long_silent_job_is_not_reaped_while_its_heartbeat_beats(monkeypatch):
    monkeypatch.setattr(services, "HEARTBEAT_SECONDS", HEARTBEAT)
    monkeypatch.setattr(services, "STALE_AFTER", STALE)
    release.clear()
    job = job_create(kind="test.blocks_silently", target_type="thing", target_id=1, enqueue=False)
    thread = _run_in_thread(job.id)
    try:
        _wait_for(lambda: Job.objects.get(id=job.id).status == "running")
        started = time.monotonic()
        beats = set()
        # The reaper runs again and again while the handler blocks for several periods.
        while time.monotonic() - started < BLOCKED_FOR.total_seconds():
            reaped = job_reap_stale()
            current = Job.objects.get(id=job.id)
            assert job.id not in reaped and current.status == "running", current.error
            beats.add(current.heartbeat_at)
            time.sleep(HEARTBEAT / 2)
        # It stayed alive because its heartbeat moved, not because the reaper never looked.
        assert len(beats) > BLOCKED_FOR / timedelta(seconds=HEARTBEAT) / 3
    finally:
        release.set()
        thread.join(timeout=60)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.result == {"released": True}


def test_a_job_whose_heartbeat_stopped_is_reaped_by_the_same_reaper(monkeypatch):
    """The counterpart, so the test above cannot pass with a reaper that never reaps: the
    same shortened periods, and a running job nobody beats for."""
    monkeypatch.setattr(services, "STALE_AFTER", STALE)
    job = job_create(kind="test.blocks_silently", target_type="thing", target_id=2, enqueue=False)
    Job.objects.filter(id=job.id).update(status="running", heartbeat_at=timezone.now())
    _wait_for(lambda: job.id in job_reap_stale(), timeout=30)
    job.refresh_from_db()
    assert job.status == "failed" and "stopped responding" in job.error
