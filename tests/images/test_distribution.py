"""Image distribution with libvirt's test driver: which hosts a policy reaches, the jobs the
periodic task and a host's arrival start (never two per image), the API and who may use it.

The test driver cannot receive volume uploads, so here the copies themselves fail; the copy
that succeeds is in test_distribution_lab.py."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cloudpanel.errors import Conflict, PermissionDenied
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import JobConflict, job_execute
from cloudpanel.projects.models import Membership
from hosts.models import Host
from hosts.services import host_create
from images.distribution import distribute_missing, hosts_missing
from images.models import Image, ImageReplica
from images.operations import DISTRIBUTE, MIRROR
from images.tasks import distribute_all
from tests.instances.conftest import make_image

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch, settings):
    # Jobs run here, in the test; nothing goes to a worker.
    monkeypatch.setattr("cloudpanel.jobs.services.job_enqueue", lambda job: None)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def make_host(name: str, status=Host.Status.ONLINE, **fields) -> Host:
    host = host_create(
        name=name, uri=f"test:///default?h={name}", default_pool="default-pool", sync=False,
        **fields,
    )  # fmt: skip
    Host.objects.filter(pk=host.pk).update(status=status)
    host.refresh_from_db()
    return host


@pytest.fixture
def hosts(db):
    return {
        "a": make_host("a"),
        "b": make_host("b"),
        "down": make_host("down", status=Host.Status.OFFLINE),
        "maint": make_host("maint", maintenance=True),
        "off": make_host("off", enabled=False),
    }


@pytest.fixture
def image(default_project, settings):
    return make_image(default_project, settings, name="dist", fmt="raw", size_mib=1)


def copy_on(image, host) -> ImageReplica:
    return ImageReplica.objects.create(
        image=image, host=host, pool=host.default_pool, volume="v", path="/p/v",
        status=ImageReplica.Status.ACTIVE,
    )  # fmt: skip


def children(job) -> dict[str, Job]:
    return {c.params["host_name"]: c for c in Job.objects.filter(parent=job)}


def test_policy_all_sends_a_copy_job_to_every_online_schedulable_host(hosts, image, admin_user):
    image.distribution = Image.Distribution.ALL
    image.save()
    copy_on(image, hosts["b"])
    assert [h.name for h in hosts_missing(image)] == ["a"]

    job = DISTRIBUTE.start(user=admin_user, target=image)
    job_execute(job.id)
    job.refresh_from_db()

    # One mirror child, for the one online host lacking it; the test driver refuses uploads.
    kids = children(job)
    assert list(kids) == ["a"]
    assert kids["a"].kind == MIRROR.kind
    assert kids["a"].params == {"host": hosts["a"].pk, "host_name": "a", "pool": "default-pool"}
    outcome = {row["host_name"]: row for row in job.result["hosts"]}
    assert outcome["a"]["action"] == "failed"
    assert "not supported" in outcome["a"]["reason"]
    assert outcome["b"]["action"] == "present"
    assert (outcome["down"]["action"], outcome["down"]["reason"]) == ("skipped", "offline")
    assert (outcome["maint"]["action"], outcome["maint"]["reason"]) == (
        "skipped",
        "in maintenance",
    )
    assert (outcome["off"]["action"], outcome["off"]["reason"]) == ("skipped", "disabled")
    assert job.status == Job.Status.FAILED
    assert "a:" in job.error
    assert ImageReplica.objects.get(image=image, host=hosts["a"]).status == "error"


def test_policy_hosts_reaches_only_the_hosts_chosen(hosts, image, admin_user):
    image.distribution = Image.Distribution.HOSTS
    image.save()
    image.distribution_hosts.set([hosts["b"], hosts["down"]])
    assert [h.name for h in hosts_missing(image)] == ["b"]
    job = DISTRIBUTE.start(user=admin_user, target=image)
    job_execute(job.id)
    job.refresh_from_db()
    assert list(children(job)) == ["b"]
    assert {row["host_name"] for row in job.result["hosts"]} == {"b", "down"}


def test_the_periodic_task_starts_one_job_per_image_lacking_copies(
    hosts, image, default_project, settings, admin_user
):
    image.distribution = Image.Distribution.ALL
    image.save()
    everywhere = make_image(default_project, settings, name="done", fmt="raw", size_mib=1)
    everywhere.distribution = Image.Distribution.ALL
    everywhere.save()
    copy_on(everywhere, hosts["a"])
    copy_on(everywhere, hosts["b"])
    make_image(default_project, settings, name="ondemand", fmt="raw", size_mib=1)

    started = distribute_all()

    jobs = Job.objects.filter(kind=DISTRIBUTE.kind)
    assert [j.id for j in jobs] == started
    assert [j.target_id for j in jobs] == [image.pk]
    assert jobs[0].requested_by is None
    # Never a second one while the first is pending or running.
    assert distribute_all() == []
    assert distribute_missing([image]) == []
    with pytest.raises(JobConflict):
        DISTRIBUTE.start(user=admin_user, target=image)


def test_a_host_that_joins_later_gets_a_job_from_the_periodic_task(hosts, image):
    image.distribution = Image.Distribution.ALL
    image.save()
    for name in ("a", "b"):
        copy_on(image, hosts[name])
    assert distribute_all() == []  # every online host has it

    make_host("late")
    started = distribute_all()

    assert len(started) == 1
    job = Job.objects.get(pk=started[0])
    job_execute(job.id)
    assert list(children(job)) == ["late"]


def test_a_host_coming_online_starts_a_distribution_at_once(
    hosts, image, django_capture_on_commit_callbacks
):
    image.distribution = Image.Distribution.ALL
    image.save()
    for name in ("a", "b"):
        copy_on(image, hosts[name])
    with django_capture_on_commit_callbacks(execute=True):
        joined = host_create(
            name="joined", uri="test:///default?h=joined", default_pool="default-pool"
        )  # synced: it goes online, and hosts.signals.host_changed is sent
    assert joined.status == Host.Status.ONLINE
    job = Job.objects.get(kind=DISTRIBUTE.kind, target_id=image.pk)
    job_execute(job.id)
    assert list(children(job)) == ["joined"]


def test_distribution_refusals(hosts, image, admin_user, member_user):
    with pytest.raises(Conflict, match="on demand"):
        DISTRIBUTE.start(user=admin_user, target=image)
    image.distribution = Image.Distribution.ALL
    image.save()
    with pytest.raises(PermissionDenied, match="administrators"):
        DISTRIBUTE.start(user=member_user, target=image)


# --- the API ---------------------------------------------------------------------------


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_admins_set_the_policy_and_start_a_distribution_through_the_api(hosts, image, admin_user):
    client = client_for(admin_user)
    url = f"/api/v1/images/{image.pk}/"
    response = client.patch(
        url, {"distribution": "hosts", "distribution_hosts": [hosts["a"].pk]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["distribution"] == "hosts"
    assert response.json()["distribution_hosts"] == [hosts["a"].pk]
    image.refresh_from_db()
    assert list(image.distribution_hosts.all()) == [hosts["a"]]

    response = client.post(f"{url}distribute/")
    assert response.status_code == 202, response.content
    assert response.json()["kind"] == "image.distribute"
    assert client.post(f"{url}distribute/").status_code == 409  # one at a time

    response = client.patch(url, {"distribution": "all"}, format="json")
    assert response.json()["distribution_hosts"] == []  # cleared
    assert client.patch(url, {"distribution": "hosts"}, format="json").status_code == 400
    assert client.get(url).json()["distribution"] == "all"


def test_tenants_cannot_set_the_policy_nor_distribute(
    hosts, default_project, member_user, settings
):
    Membership.objects.create(user=member_user, project=default_project, role="member")
    own = make_image(default_project, settings, name="own", fmt="raw", size_mib=1)
    Image.objects.filter(pk=own.pk).update(visibility=Image.Visibility.PROJECT)
    client = client_for(member_user)
    url = f"/api/v1/images/{own.pk}/"
    for body in (
        {"distribution": "all"},
        {"distribution_hosts": [hosts["a"].pk]},
        {"distribution_hosts": [99999]},  # 403 too: no probing for host ids
    ):
        response = client.patch(url, body, format="json")
        assert response.status_code == 403, (body, response.content)
    assert client.post(f"{url}distribute/").status_code == 403
    shown = client.get(url).json()
    assert "distribution_hosts" not in shown and "replicas" not in shown
    own.refresh_from_db()
    assert own.distribution == Image.Distribution.NONE
    # Their other fields still change.
    assert client.patch(url, {"min_ram_mib": 64}, format="json").status_code == 200


def test_the_image_page_shows_the_policy_and_sets_it(hosts, image, admin_user, client):
    client.force_login(admin_user)
    copy_on(image, hosts["a"])
    page = client.get(f"/images/{image.pk}/").content.decode()
    assert 'id="distribution"' in page
    response = client.post(
        f"/images/{image.pk}/distribution/",
        {"distribution": "hosts", "hosts": [hosts["a"].pk, hosts["b"].pk], "distribute": "1"},
    )
    assert response.status_code == 302
    image.refresh_from_db()
    assert image.distribution == "hosts"
    assert set(image.distribution_hosts.all()) == {hosts["a"], hosts["b"]}
    assert Job.objects.filter(kind=DISTRIBUTE.kind, target_id=image.pk).count() == 1
    page = client.get(f"/images/{image.pk}/").content.decode()
    assert f'data-distribution-host="{hosts["a"].pk}"' in page
    assert "Present" in page and "Missing" in page
