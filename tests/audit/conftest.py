"""Audit tests: two projects, their people, a host on libvirt's test driver, instance rows."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cloudpanel.audit.models import AuditEvent
from cloudpanel.projects.models import Membership, Project
from tests.instances.conftest import make_image


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def blue(db):
    return Project.objects.create(name="blue")


@pytest.fixture
def red(db):
    return Project.objects.create(name="red")


def _user(django_user_model, name, project=None, role=Membership.Role.MEMBER, **extra):
    user = django_user_model.objects.create_user(name, password=f"pw-{name}-123", **extra)
    if project is not None:
        Membership.objects.create(user=user, project=project, role=role)
    return user


@pytest.fixture
def admin(django_user_model):
    return _user(django_user_model, "boss", is_staff=True, is_superuser=True)


@pytest.fixture
def blue_member(django_user_model, blue):
    return _user(django_user_model, "bob", blue)


@pytest.fixture
def blue_viewer(django_user_model, blue):
    return _user(django_user_model, "vic", blue, Membership.Role.VIEWER)


@pytest.fixture
def red_member(django_user_model, red):
    return _user(django_user_model, "rita", red)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def flavor(db):
    from instances.models import Flavor

    return Flavor.objects.create(name="tiny", vcpus=1, ram_mib=64, disk_gib=1)


@pytest.fixture
def big_flavor(db):
    from instances.models import Flavor

    return Flavor.objects.create(name="big", vcpus=1, ram_mib=128, disk_gib=2)


@pytest.fixture
def host(db):
    from hosts.services import host_create

    return host_create(name="demo", uri="test:///default", default_pool="default-pool")


@pytest.fixture
def image(blue, settings):
    return make_image(blue, settings)


def make_instance(project, flavor, host, *, name="web", state="running", domain="cp-x", image=None):
    from instances.models import Instance

    return Instance.objects.create(
        name=name, project=project, flavor=flavor, host=host, state=state, domain_name=domain,
        image=image,
    )  # fmt: skip


def events(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("id"))
