"""Projects, roles and quotas: one project with a user of each role, another project, and a
schedulable host on libvirt's test driver (jobs are created, not run)."""

from __future__ import annotations

import subprocess

import pytest
from rest_framework.test import APIClient

from cloudpanel.projects.models import Membership, Project

GIB = 1024**3
MIB = 1024**2


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def team(db):
    return Project.objects.create(name="team")


@pytest.fixture
def other(db):
    return Project.objects.create(name="other")


def _member(django_user_model, name, project, role):
    user = django_user_model.objects.create_user(name, password=f"pw-{name}-12345")
    Membership.objects.create(project=project, user=user, role=role)
    return user


@pytest.fixture
def manager(django_user_model, team):
    return _member(django_user_model, "mona", team, Membership.Role.MANAGER)


@pytest.fixture
def member(django_user_model, team):
    return _member(django_user_model, "mike", team, Membership.Role.MEMBER)


@pytest.fixture
def viewer(django_user_model, team):
    return _member(django_user_model, "vera", team, Membership.Role.VIEWER)


@pytest.fixture
def other_manager(django_user_model, other):
    return _member(django_user_model, "otto", other, Membership.Role.MANAGER)


@pytest.fixture
def host(test_host):
    test_host.storage_pools = [{"name": "default", "active": True, "capacity_bytes": 500 * GIB}]
    test_host.save()
    return test_host


@pytest.fixture
def flavor(db):
    from instances.services import flavor_create

    return flavor_create(name="q-small", vcpus=2, ram_mib=128, disk_gib=2)


@pytest.fixture
def big_flavor(db):
    from instances.services import flavor_create

    return flavor_create(name="q-big", vcpus=4, ram_mib=256, disk_gib=4)


def make_image(project, settings, name="q-img"):
    from images.models import Image

    path = settings.IMAGE_STORE / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return Image.objects.create(
        name=name,
        disk_format="qcow2",
        status=Image.Status.ACTIVE,
        visibility=Image.Visibility.PUBLIC,
        project=project,
        file=path.name,
        file_size=path.stat().st_size,
        virtual_size=64 * MIB,
    )


@pytest.fixture
def image(team, settings):
    return make_image(team, settings)
