"""The capacity lock and the quota lock, on PostgreSQL, whatever database this run uses.

On SQLite every write transaction takes the database's write lock when it begins
(transaction_mode IMMEDIATE), which serialises two creates even without instance_create's
row lock on the host or quota_reserve's on the project: test_concurrency.py and
test_quota_race.py cannot tell there whether the locks are taken. On PostgreSQL only those
row locks make the second create wait and count the first one's instance. So a run on
SQLite (the local default) runs those modules again in a pytest of its own on PostgreSQL
at 127.0.0.1:5432 (what CI has, and what `make test` installs and starts elsewhere); a run
already on PostgreSQL (CI) runs them in place and collects nothing here.
A PostgreSQL that does not answer is a failure, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.conf import settings

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
MODULES = ["tests/instances/test_concurrency.py", "tests/projects/test_quota_race.py"]

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _postgres_answers() -> str | None:
    """None when the server takes a passwordless login of user postgres, else why not."""
    import psycopg

    try:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip()
    return None


if not ON_POSTGRES:

    def test_the_capacity_and_quota_locks_hold_on_postgresql(tmp_path, settings):
        problem = _postgres_answers()
        if problem:
            pytest.fail(
                f"PostgreSQL at {POSTGRES_SERVER} is needed for the lock tests "
                f"(`make test` installs and starts it: scripts/install-system.sh test, "
                f"scripts/start-services.sh test): {problem}"
            )
        report = tmp_path / "report.xml"
        # One database per run (pytest-django creates test_<name> and drops it at the end).
        env = {
            **os.environ,
            "DATABASE_URL": f"{POSTGRES_SERVER}/cloudpanel_lock_{os.getpid()}",
            "REDIS_URL": settings.REDIS_URL,
        }
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--create-db",
             f"--junitxml={report}", *MODULES],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )  # fmt: skip
        output = (run.stdout + run.stderr)[-6000:]
        assert run.returncode == 0, output
        # Every test of the module ran on PostgreSQL and passed: none skipped, none missing.
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        assert counts["tests"] >= 4, output
        assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, (counts, output)
