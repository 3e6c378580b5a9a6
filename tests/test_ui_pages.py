"""The console's pages: who may see them, what they show, and what they must never show."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from cloudpanel.jobs.models import Job
from cloudpanel.projects.models import Membership
from hosts.models import Host

pytestmark = pytest.mark.django_db

SECRET_KEY_TEXT = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAA-UI-TEST-SECRET-MARKER-7f3a9c\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
SECRET_MARKER = "UI-TEST-SECRET-MARKER-7f3a9c"


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def member_client(client, member_user):
    client.force_login(member_user)
    return client


def _job(**fields) -> Job:
    defaults = {"kind": "host.sync", "target_type": "host", "target_name": "demo"}
    return Job.objects.create(**{**defaults, **fields})


def test_login_page_renders(client):
    response = client.get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert "csrfmiddlewaretoken" in html
    assert "/static/css/cloudpanel.css" in html


def test_login_through_the_form(client, admin_user):
    response = client.post("/login/", {"username": "root-admin", "password": "pw-admin-123"})
    assert response.status_code == 302 and response.url == "/"
    response = client.post("/login/", {"username": "root-admin", "password": "wrong"})
    assert response.status_code == 200
    assert "alert-error" in response.content.decode()


@pytest.mark.parametrize("url", ["/", "/hosts/", "/hosts/new/", "/jobs/", "/portal/"])
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_logout_is_a_post_form(admin_client):
    html = admin_client.get("/").content.decode()
    assert 'action="/logout/"' in html and 'method="post"' in html
    response = admin_client.post("/logout/")
    assert response.status_code == 302 and response.url == "/login/"
    assert admin_client.get("/").status_code == 302


def test_no_cdn_assets(admin_client, test_host):
    html = admin_client.get("/").content.decode()
    for marker in ("cdn.", "unpkg", "jsdelivr", "googleapis", "cdnjs"):
        assert marker not in html
    assert "/static/js/cloudpanel.js" in html


def test_overview_for_admin(admin_client, test_host):
    job = _job(target_id=test_host.pk, status="running", progress=42, step="reading pools")
    response = admin_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Cluster capacity" in html
    assert test_host.name in html and reverse("hosts:detail", args=[test_host.pk]) in html
    assert 'data-host-count="online"' in html
    assert "badge-tcg" in html  # the test driver offers no KVM
    assert f'data-job-id="{job.id}"' in html and "width: 42%" in html
    assert "reading pools" in html
    # The nav links every section.
    for href in ("/hosts/", "/images/", "/instances/", "/jobs/", "/portal/", "/api/docs/"):
        assert f'href="{href}"' in html


def test_overview_for_member_hides_hosts(member_client, member_user, test_host, default_project):
    Membership.objects.create(user=member_user, project=default_project)
    mine = _job(
        kind="instance.start",
        target_type="instance",
        target_id=1,
        target_name="web-1",
        project=default_project,
    )
    other = _job(kind="image.import", target_type="image", target_id=2, target_name="secret-img")
    response = member_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert test_host.uri not in html and "Cluster capacity" not in html
    assert 'href="/hosts/"' not in html
    assert f'data-job-id="{mine.id}"' in html and "web-1" in html
    assert f'data-job-id="{other.id}"' not in html and "secret-img" not in html


def test_portal_lists_my_projects(member_client, member_user, default_project):
    Membership.objects.create(user=member_user, project=default_project, role="viewer")
    html = member_client.get("/portal/").content.decode()
    assert default_project.name in html and "Viewer" in html


@pytest.mark.parametrize("name", ["list", "new"])
def test_hosts_pages_are_staff_only(member_client, test_host, name):
    response = member_client.get(reverse(f"hosts:{name}"))
    assert response.status_code in (302, 403)


def test_host_detail_and_actions_are_staff_only(member_client, test_host):
    assert member_client.get(f"/hosts/{test_host.pk}/").status_code in (302, 403)
    assert member_client.post(f"/hosts/{test_host.pk}/refresh/").status_code in (302, 403)
    response = member_client.post(f"/hosts/{test_host.pk}/delete/")
    assert response.status_code in (302, 403)
    assert Host.objects.filter(pk=test_host.pk).exists()


def test_host_list(admin_client, test_host):
    response = admin_client.get("/hosts/")
    assert response.status_code == 200
    html = response.content.decode()
    assert test_host.name in html and "test:///default" in html
    assert "status-online" in html and "badge-tcg" in html
    assert "16 vCPUs" in html  # physical CPUs shown next to the ratio
    assert "× 4" in html  # default vCPU ratio


def test_host_detail(admin_client, test_host):
    response = admin_client.get(f"/hosts/{test_host.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "i686" in html  # arch
    assert "TEST" in html and "9.0.0" in html  # hypervisor, libvirt version
    assert "TCG only" in html and "no vmx/svm" in html
    assert "default-pool" in html and "100 GiB" in html
    assert "virbr0" in html and "192.168.122.1/24" in html
    assert "Health history" in html and "unknown" in html  # unknown -> online event
    assert reverse("hosts:refresh", args=[test_host.pk]) in html


def test_refresh_button_syncs(admin_client, test_host):
    Host.objects.filter(pk=test_host.pk).update(capabilities={}, storage_pools=[])
    response = admin_client.post(f"/hosts/{test_host.pk}/refresh/")
    assert response.status_code == 302 and response.url == f"/hosts/{test_host.pk}/"
    test_host.refresh_from_db()
    assert test_host.capabilities["hypervisor"] == "TEST"
    assert test_host.storage_pools
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("synced" in m for m in messages)


def test_refresh_requires_post(admin_client, test_host):
    assert admin_client.get(f"/hosts/{test_host.pk}/refresh/").status_code == 405


def test_add_host_bad_uri_shows_field_error(admin_client):
    response = admin_client.post(
        "/hosts/new/",
        {
            "name": "bad",
            "uri": "http://example.com/",
            "ssh_private_key": SECRET_KEY_TEXT,
            "cpu_allocation_ratio": "4",
            "ram_allocation_ratio": "1",
            "disk_allocation_ratio": "1",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="id_uri_errors"' in html and "Unsupported URI scheme" in html
    assert SECRET_MARKER not in html  # the key is not echoed back into the textarea
    assert not Host.objects.exists()


def test_add_host_bad_ratio_shows_field_error(admin_client):
    response = admin_client.post(
        "/hosts/new/",
        {
            "name": "r",
            "uri": "test:///default",
            "cpu_allocation_ratio": "0",
            "ram_allocation_ratio": "1",
            "disk_allocation_ratio": "1",
        },
    )
    assert response.status_code == 200
    assert 'id="id_cpu_allocation_ratio_errors"' in response.content.decode()
    assert not Host.objects.exists()


def test_add_host_duplicate_uri_is_a_field_error(admin_client, test_host):
    response = admin_client.post(
        "/hosts/new/",
        {
            "name": "again",
            "uri": "test:///default",
            "cpu_allocation_ratio": "4",
            "ram_allocation_ratio": "1",
            "disk_allocation_ratio": "1",
        },
    )
    assert response.status_code == 200
    assert 'id="id_uri_errors"' in response.content.decode()
    assert Host.objects.count() == 1


def test_add_unreachable_host_is_saved_with_error_and_key_never_shown(admin_client):
    # Port 1 on loopback refuses at once: a reachable-looking URI with nothing behind it.
    response = admin_client.post(
        "/hosts/new/",
        {
            "name": "far-away",
            "uri": "qemu+tcp://127.0.0.1:1/system",
            "ssh_private_key": SECRET_KEY_TEXT,
            "cpu_allocation_ratio": "8",
            "ram_allocation_ratio": "1.5",
            "disk_allocation_ratio": "1",
        },
        follow=True,
    )
    host = Host.objects.get(name="far-away")
    assert host.status == Host.Status.ERROR and host.last_error
    assert host.has_ssh_key and SECRET_MARKER not in host.ssh_private_key_encrypted
    assert str(host.cpu_allocation_ratio) == "8.00"
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/hosts/{host.pk}/"
    assert "could not be reached" in html and "status-error" in html
    pages = ["/", "/hosts/", f"/hosts/{host.pk}/", "/hosts/new/", "/jobs/", "/portal/"]
    for url in pages:
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert SECRET_MARKER not in page.content.decode(), url
        assert "BEGIN OPENSSH" not in page.content.decode(), url


def test_delete_host(admin_client, test_host):
    response = admin_client.post(f"/hosts/{test_host.pk}/delete/")
    assert response.status_code == 302 and response.url == "/hosts/"
    assert not Host.objects.filter(pk=test_host.pk).exists()


def test_delete_host_with_instances_shows_conflict(admin_client, test_host, default_project):
    from instances.models import Flavor, Instance

    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=256, disk_gib=1)
    Instance.objects.create(
        name="vm1", project=default_project, flavor=flavor, host=test_host, state="running"
    )
    response = admin_client.post(f"/hosts/{test_host.pk}/delete/", follow=True)
    assert Host.objects.filter(pk=test_host.pk).exists()
    html = response.content.decode()
    assert "alert-error" in html and "still has 1 instance" in html


def test_jobs_list_and_filters(admin_client, test_host):
    running = _job(target_id=test_host.pk, status="running", progress=30)
    done = _job(
        kind="image.import",
        target_type="image",
        target_id=9,
        status="succeeded",
        progress=100,
        target_name="debian-12",
    )
    html = admin_client.get("/jobs/").content.decode()
    assert f'data-job-id="{running.id}"' in html and f'data-job-id="{done.id}"' in html
    assert "job-running" in html and "job-succeeded" in html
    html = admin_client.get("/jobs/?status=succeeded").content.decode()
    assert f'data-job-id="{done.id}"' in html and f'data-job-id="{running.id}"' not in html
    html = admin_client.get("/jobs/?kind=host.sync").content.decode()
    assert f'data-job-id="{running.id}"' in html and f'data-job-id="{done.id}"' not in html


def test_job_detail(admin_client, test_host):
    job = _job(
        target_id=test_host.pk,
        status="running",
        progress=55,
        step="copying",
        log="12:00:00 starting\n12:00:01 copying\n",
    )
    html = admin_client.get(f"/jobs/{job.id}/").content.decode()
    assert "12:00:01 copying" in html and "<pre" in html
    # Live through the page's one status socket (live.js), from the job's rendered state.
    assert f'data-job-id="{job.id}" data-job-state="running"' in html and "js/live.js" in html
    assert f"/api/v1/jobs/{job.id}/cancel/" in html
    assert "width: 55%" in html
    failed = _job(target_id=None, target_type="image", status="failed", error="disk full")
    html = admin_client.get(f"/jobs/{failed.id}/").content.decode()
    assert "disk full" in html
    assert "/cancel/" not in html and 'data-job-state="failed"' in html


def test_job_detail_of_another_project_is_404(member_client, member_user):
    from cloudpanel.projects.models import Project

    other = Project.objects.create(name="other")
    job = _job(project=other, target_type="instance", target_id=3)
    assert member_client.get(f"/jobs/{job.id}/").status_code == 404


def test_not_found_page_keeps_the_layout(client, member_user):
    client.force_login(member_user)
    response = client.get("/instances/999999/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Not found" in page and 'class="sidebar"' in page
