"""Operations: one registered object per job kind; start() checks before any row is
written; a parent runs child jobs, whose cancellation, progress and outcomes follow it."""

import threading

import pytest

from cloudpanel.errors import Conflict
from cloudpanel.jobs import registry
from cloudpanel.jobs.children import ChildSpec, run_children
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import FunctionOperation, Operation, register
from cloudpanel.jobs.services import job_cancel, job_create, job_execute
from cloudpanel.projects.models import Project

pytestmark = pytest.mark.django_db(transaction=True)

# The project rows stand in for targets: any model with a pk will do.
released = threading.Event()
started_second = threading.Event()


class Child(Operation):
    kind = "test.child"
    target_type = "thing"

    def target_name(self, target):
        return target.name

    def target_project(self, target):
        return None

    def check(self, *, user, target, value=0):
        if value < 0:
            raise Conflict("negative values are refused")
        return {"value": value}

    def run(self, job, ctx):
        if job.params["value"] == 2:  # the one that waits: cancellation reaches it here
            started_second.set()
            for _ in range(600):  # at most 30 s, so a broken cancellation fails, not hangs
                if released.wait(0.05):
                    break
                ctx.check_cancelled()
        ctx.progress(50, f"child {job.params['value']}")
        return {"doubled": job.params["value"] * 2}


class Parent(Child):
    kind = "test.parent"

    def run(self, job, ctx):
        targets = Project.objects.filter(name__startswith="t-").order_by("name")
        specs = [ChildSpec(CHILD, t, {"value": int(t.name[2:])}) for t in targets]
        outcomes = run_children(ctx, specs)
        return {"children": outcomes, "sum": sum(o["result"].get("doubled", 0) for o in outcomes)}


CHILD = register(Child())
PARENT = register(Parent())


@pytest.fixture
def targets():
    released.clear()
    started_second.clear()
    return [Project.objects.create(name=f"t-{n}") for n in (1, 3, 4)]


def test_every_product_job_kind_is_an_operation_object_of_its_own():
    product = {k: op for k, op in registry.registered().items() if not k.startswith("test.")}
    expected = {
        "instance.create", "instance.start", "instance.shutdown", "instance.stop",
        "instance.reboot", "instance.reset", "instance.suspend", "instance.resume",
        "instance.resize", "instance.snapshot_create", "instance.snapshot_revert",
        "instance.snapshot_delete", "instance.delete", "image.import", "image.mirror",
        "image.distribute", "instance.migrate", "instance.cold-migrate", "host.evacuate",
        "instance.rebuild", "instance.mirror", "instance.mirror-pivot", "instance.mirror-stop",
        "instance.backup", "backup.restore", "instance.capture",
    }  # fmt: skip
    assert set(product) == expected
    for kind, operation in product.items():
        assert isinstance(operation, Operation) and operation.kind == kind
        assert not isinstance(operation, FunctionOperation), kind  # checks live with it
        assert operation.target_type in Job.TargetType.values


def test_start_refuses_before_any_job_row_and_carries_the_checked_params(targets):
    with pytest.raises(Conflict):
        CHILD.start(user=None, target=targets[0], value=-1)
    assert not Job.objects.exists()
    job = CHILD.start(user=None, target=targets[0], value=5)
    assert (job.kind, job.target_id, job.target_name, job.params) == (
        "test.child", targets[0].pk, "t-1", {"value": 5}
    )


def test_children_run_under_the_parent_and_their_results_flow_up(targets):
    released.set()  # nobody waits
    parent = job_create(kind="test.parent", target_type="thing", target_id=0, enqueue=False)
    job_execute(parent.id)
    parent.refresh_from_db()
    assert parent.status == "succeeded" and parent.progress == 100
    assert parent.result["sum"] == 2 + 6 + 8
    children = list(Job.objects.filter(parent=parent).order_by("id"))
    assert [c.status for c in children] == ["succeeded"] * 3
    assert [o["job"] for o in parent.result["children"]] == [c.id for c in children]
    assert all(c.progress == 100 for c in children)


def test_cancelling_the_parent_stops_the_running_child_and_the_rest(targets):
    Project.objects.filter(name="t-3").update(name="t-2")  # the second child waits
    parent = job_create(kind="test.parent", target_type="thing", target_id=0, enqueue=False)
    runner = threading.Thread(target=job_execute, args=(parent.id,))
    runner.start()
    assert started_second.wait(30)
    job_cancel(job=Job.objects.get(id=parent.id))
    runner.join(30)
    assert not runner.is_alive()

    parent.refresh_from_db()
    first, second, third = Job.objects.filter(parent=parent).order_by("id")
    assert parent.status == "cancelled"
    assert (first.status, second.status, third.status) == ("succeeded", "cancelled", "cancelled")
    assert second.started_at is not None and third.started_at is None  # never ran
    # What happened so far is still reported by the parent.
    assert [o["status"] for o in parent.result["children"]] == [
        "succeeded", "cancelled", "cancelled",
    ]  # fmt: skip


def test_a_child_whose_target_is_busy_is_reported_refused_and_the_rest_run(targets):
    released.set()
    busy = job_create(kind="test.child", target_type="thing", target_id=targets[1].pk,
                      enqueue=False)  # fmt: skip
    parent = job_create(kind="test.parent", target_type="thing", target_id=0, enqueue=False)
    job_execute(parent.id)
    parent.refresh_from_db()
    assert parent.status == "succeeded"
    by_target = {o["target"]["name"]: o for o in parent.result["children"]}
    assert by_target["t-3"]["status"] == "refused" and str(busy.id) in by_target["t-3"]["error"]
    assert by_target["t-1"]["status"] == by_target["t-4"]["status"] == "succeeded"


def test_a_parent_reaped_after_its_worker_died_leaves_no_child_running(targets):
    # The parent's worker died between children: nobody will run the pending ones, so
    # the reaper cancels them with the parent (never pending forever).
    from datetime import timedelta

    from django.utils import timezone

    from cloudpanel.jobs.services import job_reap_stale

    parent = job_create(kind="test.parent", target_type="thing", target_id=0, enqueue=False)
    child = job_create(kind="test.child", target_type="thing", target_id=targets[0].pk,
                       enqueue=False, parent=parent, params={"value": 1})  # fmt: skip
    long_ago = timezone.now() - timedelta(minutes=10)
    Job.objects.filter(id=parent.id).update(status="running", heartbeat_at=long_ago,
                                            started_at=long_ago)  # fmt: skip
    assert parent.id in job_reap_stale()
    child.refresh_from_db()
    assert child.status == "cancelled"


def test_the_api_and_the_page_show_a_parents_children(targets, admin_user, client):
    from rest_framework.test import APIClient

    released.set()
    parent = job_create(kind="test.parent", target_type="thing", target_id=0, enqueue=False)
    job_execute(parent.id)
    children = list(Job.objects.filter(parent=parent).order_by("id"))
    api = APIClient()
    api.force_authenticate(admin_user)
    listed = api.get(f"/api/v1/jobs/?parent={parent.id}").json()["results"]
    assert sorted(row["id"] for row in listed) == [c.id for c in children]
    assert {row["parent"] for row in listed} == {parent.id}
    client.force_login(admin_user)
    page = client.get(f"/jobs/{parent.id}/").content.decode()
    assert all(f"/jobs/{c.id}/" in page for c in children)
    assert f"/jobs/{parent.id}/" in client.get(f"/jobs/{children[0].id}/").content.decode()
