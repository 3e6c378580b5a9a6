"""The console pages: who sees them, and what they load (vendored files, no CDN)."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from cloudpanel.projects.models import Membership, Project
from instances.models import Flavor, Instance

pytestmark = pytest.mark.django_db

PAGES = ("console", "serial")


@pytest.fixture
def world(django_user_model, test_host):
    a = Project.objects.create(name="proj-a")
    b = Project.objects.create(name="proj-b")
    users = {n: django_user_model.objects.create_user(n, password="x") for n in ("m", "v", "o")}
    Membership.objects.create(project=a, user=users["m"])
    Membership.objects.create(project=a, user=users["v"], role=Membership.Role.VIEWER)
    Membership.objects.create(project=b, user=users["o"])
    flavor = Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)
    instance = Instance.objects.create(
        name="vm1", project=a, flavor=flavor, host=test_host, domain_name="vm1",
        state=Instance.State.RUNNING,
    )  # fmt: skip
    return users, instance


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.parametrize("kind", PAGES)
def test_a_member_gets_the_page_and_its_scripts(world, kind):
    users, instance = world
    page = _client(users["m"]).get(f"/instances/{instance.pk}/{kind}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-ticket-url="/api/v1/instances/{instance.pk}/console/"' in html
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', html)
    script = "console" if kind == "console" else "serial"
    assert any(s.endswith(f"/js/{script}.js") for s in scripts)
    for src in scripts:
        assert src.startswith("/static/"), src  # nothing from a CDN
        assert finders.find(src.removeprefix("/static/")), src
    if kind == "console":
        assert '<script type="module"' in html  # noVNC's ES modules


def test_the_vendored_libraries_and_their_licenses_are_there():
    for path in (
        "vendor/novnc/core/rfb.js",
        "vendor/novnc/vendor/pako/lib/zlib/inflate.js",
        "vendor/novnc/LICENSE.txt",
        "vendor/novnc/LICENSE.MPL-2.0",
        "vendor/novnc/vendor/pako/LICENSE",
        "vendor/xterm/xterm.js",
        "vendor/xterm/xterm.css",
        "vendor/xterm/addon-fit.js",
        "vendor/xterm/LICENSE",
    ):
        assert finders.find(path), path


@pytest.mark.parametrize("kind", PAGES)
def test_a_viewer_sees_the_page_without_a_console(world, kind):
    users, instance = world
    page = _client(users["v"]).get(f"/instances/{instance.pk}/{kind}/")
    assert page.status_code == 200
    assert b"data-ticket-url" not in page.content
    assert b"may look at this instance but not use its console" in page.content


@pytest.mark.parametrize("kind", PAGES)
def test_another_projects_member_gets_a_404(world, kind):
    users, instance = world
    assert _client(users["o"]).get(f"/instances/{instance.pk}/{kind}/").status_code == 404
    assert _client(users["o"]).get(f"/instances/99999/{kind}/").status_code == 404


@pytest.mark.parametrize("kind", PAGES)
def test_anonymous_is_sent_to_sign_in(world, kind):
    _, instance = world
    answer = _client().get(f"/instances/{instance.pk}/{kind}/")
    assert answer.status_code == 302 and "/login/" in answer["Location"]
