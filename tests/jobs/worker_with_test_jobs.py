"""The panel's Celery worker with two test job kinds registered.

Run as a module (`python -m tests.jobs.worker_with_test_jobs worker --pool prefork ...`),
it is `celery -A cloudpanel` plus these kinds; the prefork pool's children inherit the
registrations. Imported by a test, it registers the same kinds there, so job_create accepts
them.
"""

from __future__ import annotations

import os
import sys
import time

import django
from django.apps import apps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudpanel.settings")
if not apps.ready:
    django.setup()

from cloudpanel.celery import app  # noqa: E402
from cloudpanel.jobs.operations import job_handler  # noqa: E402

OUTLIVES_ITS_TIME_LIMIT = "test.outlives_its_time_limit"
QUICK = "test.quick"


@job_handler(OUTLIVES_ITS_TIME_LIMIT)
def _outlives_its_time_limit(job, ctx):
    ctx.progress(1, "started")
    # Far longer than any test waits: only the time limit ends this.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {"finished": True}


@job_handler(QUICK)
def _quick(job, ctx):
    return {"pid": os.getpid()}


if __name__ == "__main__":
    app.worker_main(sys.argv[1:])
