"""The quota lock, on PostgreSQL, whatever database this run uses.

On SQLite every write transaction takes the database's write lock when it begins
(transaction_mode IMMEDIATE), which serialises two creates even without quota_reserve's
row lock on the project: test_quota_race.py cannot tell there whether the lock is taken.
So a run on SQLite (the local default) runs that module again in a pytest of its own on
PostgreSQL at 127.0.0.1:5432 (as tests/instances/test_concurrency_postgres.py does for the
host's capacity lock); a run already on PostgreSQL runs it in place and collects nothing
here. A PostgreSQL that does not answer is a failure, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from django.conf import settings

from tests.instances.test_concurrency_postgres import POSTGRES_SERVER, REPO_ROOT, _postgres_answers

MODULES = ["tests/projects/test_quota_race.py"]

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


if not ON_POSTGRES:

    def test_the_quota_lock_holds_on_postgresql(tmp_path, settings):
        problem = _postgres_answers()
        if problem:
            pytest.fail(f"PostgreSQL at {POSTGRES_SERVER} is needed for the quota race: {problem}")
        report = tmp_path / "report.xml"
        env = {
            **os.environ,
            "DATABASE_URL": f"{POSTGRES_SERVER}/cloudpanel_quota_{os.getpid()}",
            "REDIS_URL": settings.REDIS_URL,
        }
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--create-db",
             f"--junitxml={report}", *MODULES],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        output = (run.stdout + run.stderr)[-6000:]
        assert run.returncode == 0, output
        # Every test of the module ran on PostgreSQL and passed: none skipped, none missing.
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        assert counts["tests"] >= 3, output
        assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, (counts, output)
