"""Concurrent creates in one project with a quota of one instance: exactly one is made.

On PostgreSQL only the project's row lock (quota_reserve) makes the second create wait and
count the first one's instance; tests/instances/test_concurrency_postgres.py runs this
module there when the suite itself runs on SQLite.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from cloudpanel.errors import QuotaExceeded
from cloudpanel.jobs.models import Job
from cloudpanel.projects.quotas import quota_set
from instances.models import Instance
from instances.operations.create import CREATE
from instances.operations.snapshot import TAKE_SNAPSHOT

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 6


def race(fn) -> list[str]:
    """Run fn(i) in THREADS threads released together; each outcome's name."""
    outcomes: list[str] = []
    barrier = threading.Barrier(THREADS)

    def one(i: int) -> None:
        try:
            barrier.wait()
            fn(i)
            outcomes.append("made")
        except QuotaExceeded:
            outcomes.append("over quota")
        except Exception as exc:  # any other answer fails the test below, with its name
            outcomes.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return sorted(outcomes)


def test_parallel_creates_make_exactly_one_instance(team, member, host, flavor, image):
    quota_set(team, instances=1)

    outcomes = race(
        lambda i: CREATE.start(user=member, name=f"vm{i}", image=image, flavor=flavor, project=team)
    )

    assert outcomes == ["made"] + ["over quota"] * (THREADS - 1), outcomes
    assert Instance.objects.filter(project=team).count() == 1
    assert Job.objects.filter(kind="instance.create").count() == 1


def test_parallel_vcpu_creates_stay_within_the_quota(team, member, host, flavor, image):
    quota_set(team, vcpus=flavor.vcpus * 2)  # room for two

    outcomes = race(
        lambda i: CREATE.start(user=member, name=f"vm{i}", image=image, flavor=flavor, project=team)
    )

    assert outcomes == ["made"] * 2 + ["over quota"] * (THREADS - 2), outcomes
    assert Instance.objects.filter(project=team).count() == 2


def test_parallel_snapshots_stay_within_the_quota(team, member, host, flavor):
    instances = [
        Instance.objects.create(name=f"vm{i}", project=team, flavor=flavor, host=host,
                                state=Instance.State.SHUTOFF, domain_name=f"cp-vm{i}")
        for i in range(THREADS)
    ]  # fmt: skip
    quota_set(team, snapshots=1)

    outcomes = race(lambda i: TAKE_SNAPSHOT.start(user=member, target=instances[i], name="s"))

    assert outcomes == ["made"] + ["over quota"] * (THREADS - 1), outcomes
    assert Job.objects.filter(kind="instance.snapshot_create").count() == 1
