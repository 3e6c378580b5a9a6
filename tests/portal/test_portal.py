"""The portal's pages with Django's test client: projects, switcher, create within quota,
actions, viewers, other projects, and where a sign-in lands."""

from __future__ import annotations

import pytest
from django.test import Client

from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership, Project, Quota
from instances import operations
from instances.models import Instance, Snapshot
from instances.services import flavor_create

from ..instances.conftest import make_image

pytestmark = pytest.mark.django_db
GIB = 1024**3


@pytest.fixture
def host(test_host):
    test_host.storage_pools = [{"name": "default", "active": True, "capacity_bytes": 100 * GIB}]
    test_host.save()
    return test_host


@pytest.fixture
def world(host, admin_user, member_user, settings):
    """alice: member of 'alpha', viewer of 'beta'; 'gamma' is someone else's."""
    alpha, beta, gamma = (Project.objects.create(name=n) for n in ("alpha", "beta", "gamma"))
    Membership.objects.create(user=member_user, project=alpha, role="member")
    Membership.objects.create(user=member_user, project=beta, role="viewer")
    flavor = flavor_create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    library = Project.objects.create(name="library")  # owns the public image
    image = make_image(library, settings, name="public-img", visibility="public")
    gamma_image = make_image(gamma, settings, name="gamma-img", visibility="project")

    def instance(project, name):
        job = operations.CREATE.start(
            user=admin_user, name=name, image=image, flavor=flavor, project=project, host=host
        )
        Job.objects.filter(pk=job.pk).update(status="succeeded")
        Instance.objects.filter(pk=job.target_id).update(state="running", current_job=None)
        return Instance.objects.get(pk=job.target_id)

    return {
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
        "flavor": flavor,
        "image": image,
        "gamma_image": gamma_image,
        "a1": instance(alpha, "alpha-vm"),
        "b1": instance(beta, "beta-vm"),
        "g1": instance(gamma, "gamma-vm"),
    }


@pytest.fixture
def alice(member_user):
    client = Client()
    client.force_login(member_user)
    return client


def _switch(client, project):
    response = client.post("/portal/project/", {"project": project.pk})
    assert response.status_code == 302 and response.url == "/portal/"


def test_only_my_projects_and_the_switcher_remembers(alice, world):
    html = alice.get("/portal/").content.decode()
    assert 'name="project"' in html
    assert ">alpha · Member<" in html and ">beta · Viewer<" in html and "gamma" not in html
    assert "alpha-vm" in html and "beta-vm" not in html  # alpha first (by name)

    _switch(alice, world["beta"])
    for _ in range(2):  # remembered in the session
        html = alice.get("/portal/").content.decode()
        assert "beta-vm" in html and "alpha-vm" not in html
        assert f'<option value="{world["beta"].pk}" selected>' in html

    # Another project, or nonsense: 404, and the choice stays.
    assert alice.post("/portal/project/", {"project": world["gamma"].pk}).status_code == 404
    assert alice.post("/portal/project/", {"project": "x"}).status_code == 404
    assert "beta-vm" in alice.get("/portal/").content.decode()


def test_create_lists_only_the_projects_images_and_stays_within_quota(alice, world):
    Quota.objects.create(project=world["alpha"], instances=2, vcpus=4)
    page = alice.get("/portal/new/").content.decode()
    assert "public-img" in page and "gamma-img" not in page
    assert 'data-usage-resource="instances"' in page and "1 / 2" in page

    # An image of another project is refused by the form, nothing is made.
    response = alice.post(
        "/portal/new/",
        {"name": "sneaky", "image": world["gamma_image"].pk, "flavor": world["flavor"].pk},
    )
    assert response.status_code == 400 and not Instance.objects.filter(name="sneaky").exists()

    response = alice.post(
        "/portal/new/", {"name": "web-1", "image": world["image"].pk, "flavor": world["flavor"].pk}
    )
    created = Instance.objects.get(name="web-1")
    assert response.status_code == 302 and response.url == f"/portal/instances/{created.pk}/"
    assert created.project == world["alpha"] and created.current_job.kind == "instance.create"
    page = alice.get(response.url).content.decode()
    assert f'data-instance-detail="{created.pk}"' in page and 'data-job-id="' in page
    assert "2 / 2" in page  # usage counts it


def test_create_over_quota_shows_the_message_and_creates_nothing(alice, world):
    Quota.objects.create(project=world["alpha"], instances=1)
    instances, jobs = Instance.objects.count(), Job.objects.count()
    response = alice.post(
        "/portal/new/",
        {"name": "one-more", "image": world["image"].pk, "flavor": world["flavor"].pk},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "data-create-error" in html and "Quota exceeded for instances" in html
    assert Instance.objects.count() == instances and Job.objects.count() == jobs
    assert "is-full" in html  # the usage shows the full quota


def test_member_actions_start_the_operations(alice, world):
    a1 = world["a1"]
    page = alice.get(f"/portal/instances/{a1.pk}/").content.decode()
    for action in ("shutdown", "reboot", "stop"):
        assert f'data-power="{action}"' in page
    assert 'data-power="start"' not in page  # running: not offered
    assert f'href="/instances/{a1.pk}/console/"' in page

    assert alice.post(f"/portal/instances/{a1.pk}/power/reboot/").status_code == 302
    job = Job.objects.get(kind="instance.reboot", target_id=a1.pk)
    assert job.requested_by.username == "alice"
    # Busy now: a second action is a message, not an error page.
    response = alice.post(f"/portal/instances/{a1.pk}/power/stop/", follow=True)
    assert response.status_code == 200 and "alert-error" in response.content.decode()
    assert alice.post(f"/portal/instances/{a1.pk}/power/explode/").status_code == 404

    Job.objects.filter(pk=job.pk).update(status="succeeded")
    Instance.objects.filter(pk=a1.pk).update(current_job=None)
    alice.post(f"/portal/instances/{a1.pk}/snapshots/", {"name": "before-upgrade"})
    assert Job.objects.filter(kind="instance.snapshot_create", target_id=a1.pk).exists()
    Job.objects.filter(target_id=a1.pk).update(status="succeeded")
    Instance.objects.filter(pk=a1.pk).update(current_job=None)
    alice.post(f"/portal/instances/{a1.pk}/backups/", {"name": "nightly"})
    assert Job.objects.filter(kind="instance.backup", target_id=a1.pk).exists()


def test_a_viewer_sees_no_buttons_and_is_refused(alice, world):
    b1 = world["b1"]
    _switch(alice, world["beta"])
    assert "data-create-instance" not in alice.get("/portal/").content.decode()
    page = alice.get(f"/portal/instances/{b1.pk}/").content.decode()
    assert "beta-vm" in page
    assert "data-power" not in page and "/console/" not in page and "Take snapshot" not in page
    assert (
        "Back up now" not in page and "portal-delete" not in page and "Delete</button>" not in page
    )
    jobs = Job.objects.count()
    for url in (
        f"/portal/instances/{b1.pk}/power/stop/",
        f"/portal/instances/{b1.pk}/delete/",
        f"/portal/instances/{b1.pk}/snapshots/",
        f"/portal/instances/{b1.pk}/backups/",
    ):
        assert alice.post(url, {"name": "x"}).status_code == 403, url
    response = alice.post(
        "/portal/new/", {"name": "nope", "image": world["image"].pk, "flavor": world["flavor"].pk}
    )
    assert response.status_code == 403
    assert Job.objects.count() == jobs and not Instance.objects.filter(name="nope").exists()


def test_another_projects_instance_is_not_found(alice, world):
    g1 = world["g1"]
    assert alice.get(f"/portal/instances/{g1.pk}/").status_code == 404
    for url in (
        f"/portal/instances/{g1.pk}/power/stop/",
        f"/portal/instances/{g1.pk}/delete/",
        f"/portal/instances/{g1.pk}/snapshots/",
        f"/portal/instances/{g1.pk}/backups/",
        f"/portal/instances/{g1.pk}/snapshots/1/revert/",
        f"/portal/instances/{g1.pk}/backups/1/restore/",
    ):
        assert alice.post(url, {"name": "x"}).status_code == 404, url
    assert Job.objects.filter(target_id=g1.pk).exclude(kind="instance.create").count() == 0


@pytest.mark.parametrize(
    "next_url, lands",
    [
        (None, "/portal/"),
        ("/", "/portal/"),  # signing in from the site's root
        ("/instances/", "/instances/"),  # a safe next wins
        ("https://evil.example/", "/portal/"),
    ],
)
def test_a_tenant_lands_in_the_portal(client, member_user, default_project, next_url, lands):
    Membership.objects.create(user=member_user, project=default_project)
    data = {"username": "alice", "password": "pw-alice-123"}
    if next_url:
        data["next"] = next_url
    response = client.post("/login/", data, follow=True)
    assert response.redirect_chain[-1][0] == lands
    assert response.status_code == 200
    # Only the landing: the console's overview stays reachable afterwards.
    assert client.get("/").status_code == 200


def test_an_admin_lands_in_the_console(client, admin_user):
    response = client.post("/login/", {"username": "root-admin", "password": "pw-admin-123"})
    assert response.status_code == 302 and response.url == "/"
    response = client.get("/")
    assert response.status_code == 200 and "Cluster capacity" in response.content.decode()


def test_snapshots_are_reverted_and_deleted_through_the_operations(alice, world):
    a1 = world["a1"]
    snap = Snapshot.objects.create(instance=a1, name="clean", domain_state="running")
    page = alice.get(f"/portal/instances/{a1.pk}/").content.decode()
    assert f'data-snapshot="{snap.pk}"' in page
    assert f"/portal/instances/{a1.pk}/snapshots/{snap.pk}/revert/" in page

    alice.post(f"/portal/instances/{a1.pk}/snapshots/{snap.pk}/revert/")
    revert = Job.objects.get(kind="instance.snapshot_revert", target_id=a1.pk)
    assert revert.params["snapshot"] == snap.pk
    Job.objects.filter(pk=revert.pk).update(status="succeeded")
    Instance.objects.filter(pk=a1.pk).update(current_job=None)
    alice.post(f"/portal/instances/{a1.pk}/snapshots/{snap.pk}/delete/")
    assert Job.objects.filter(kind="instance.snapshot_delete", target_id=a1.pk).exists()
    assert alice.post(f"/portal/instances/{a1.pk}/snapshots/{snap.pk}/explode/").status_code == 404

    # Another instance's snapshot through this instance's URL: not found.
    other = Snapshot.objects.create(instance=world["g1"], name="theirs")
    url = f"/portal/instances/{a1.pk}/snapshots/{other.pk}/delete/"
    assert alice.post(url).status_code == 404
