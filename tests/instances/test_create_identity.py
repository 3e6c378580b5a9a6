"""Instance create's identity fields through the API (jobs created, not run): keypairs,
user_data, hostname and password; each bad value is a 400 naming the field, and the job
carries only the password's hash."""

from __future__ import annotations

import json
import subprocess

import pytest
from rest_framework.test import APIClient

from cloudpanel.errors import InvalidInput
from cloudpanel.jobs.models import Job
from hosts.models import Host
from images.models import Image
from instances.keypairs import keypair_create
from instances.models import Instance
from instances.operations.create import Create

from .conftest import make_image

pytestmark = pytest.mark.django_db

GIB = 1024**3
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def host(test_host):
    assert test_host.status == Host.Status.ONLINE, test_host.last_error
    test_host.storage_pools = [{"name": "default", "active": True, "capacity_bytes": 100 * GIB}]
    test_host.save()
    return test_host


def cloud_init_image_fields() -> dict:
    """An image that runs cloud-init, with the default user a password is set for."""
    return {"cloud_init": True, "default_user": "debian"}


@pytest.fixture
def image(default_project, settings):
    return make_image(default_project, settings, **cloud_init_image_fields())


@pytest.fixture(scope="module")
def public_key(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("key") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.parent / "id.pub").read_text()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def create(client, image, flavor, **data):
    return client.post(
        "/api/v1/instances/",
        {"name": "vm1", "image": image.pk, "flavor": flavor.pk, **data},
        format="json",
    )


def test_identity_goes_into_the_job_with_the_password_hashed(
    api_client, admin_user, host, image, tiny_flavor, public_key
):
    key = keypair_create(user=admin_user, name="laptop", public_key=public_key)
    resp = create(
        api_client,
        image,
        tiny_flavor,
        keypairs=[key.pk],
        user_data="#cloud-config\nruncmd: [[touch, /root/marker]]\n",
        hostname="Web-1",
        password=PASSWORD,
    )
    assert resp.status_code == 202, resp.content
    job = Job.objects.get(pk=resp.json()["id"])
    identity = job.params["seed"]
    assert identity["hostname"] == "web-1"
    assert identity["keypairs"] == [key.pk]
    assert identity["ssh_keys"] == [key.public_key]
    assert identity["user_data"].startswith("#cloud-config")
    assert identity["password_hash"].startswith("$6$")
    # The clear password is nowhere: not in the job, its log, or the API's answers.
    assert PASSWORD not in json.dumps(job.params) + job.log + job.public_log
    assert PASSWORD not in resp.content.decode()
    assert PASSWORD not in api_client.get(f"/api/v1/jobs/{job.pk}/").content.decode()


def test_hostname_defaults_to_the_instance_name(api_client, host, image, tiny_flavor):
    resp = create(api_client, image, tiny_flavor, name="Web_2", user_data="#!/bin/sh\ntrue\n")
    assert resp.status_code == 202, resp.content
    assert Job.objects.get(pk=resp.json()["id"]).params["seed"]["hostname"] == "web-2"


def test_no_identity_no_seed(api_client, host, default_project, settings, tiny_flavor):
    plain = make_image(default_project, settings, name="plain", cloud_init=False)
    resp = create(api_client, plain, tiny_flavor)
    assert resp.status_code == 202, resp.content
    assert "seed" not in Job.objects.get(pk=resp.json()["id"]).params


def test_an_image_that_runs_cloud_init_always_gets_a_seed(api_client, host, image, tiny_flavor):
    resp = create(api_client, image, tiny_flavor)  # no identity given: the name as hostname
    assert resp.status_code == 202, resp.content
    assert Job.objects.get(pk=resp.json()["id"]).params["seed"]["hostname"]


def test_tenants_do_not_see_the_identity_in_their_jobs(
    member_user, default_project, host, image, tiny_flavor
):
    from cloudpanel.projects.models import Membership

    Membership.objects.create(user=member_user, project=default_project, role="member")
    alice = client_for(member_user)
    resp = create(alice, image, tiny_flavor, hostname="h1", password=PASSWORD)
    assert resp.status_code == 202, resp.content
    shown = alice.get(f"/api/v1/jobs/{resp.json()['id']}/").content.decode()
    assert "$6$" not in shown and PASSWORD not in shown


@pytest.mark.parametrize(
    "data,field,problem",
    [
        ({"user_data": "#!/bin/sh\n" + "x" * 65527}, "user_data", "at most 65536"),
        ({"user_data": "#cloud-config\nruncmd: [oops\n"}, "user_data", "not valid YAML"),
        ({"user_data": "#cloud-config\njust a string\n"}, "user_data", "mapping"),
        ({"hostname": "-bad-"}, "hostname", "1-63 letters"),
        ({"hostname": "a" * 64}, "hostname", "1-63 letters"),
        ({"password": "two\nlines"}, "password", "line breaks"),
        ({"keypairs": [999999]}, "keypairs", "Unknown key pair 999999"),
        ({"keypairs": "1"}, "keypairs", ""),
    ],
)
def test_bad_identity_is_a_400_naming_the_field(
    api_client, host, image, tiny_flavor, data, field, problem
):
    resp = create(api_client, image, tiny_flavor, **data)
    assert resp.status_code == 400, resp.content
    body = resp.json()["errors"]
    assert field in body, body
    assert problem in " ".join(body[field])
    assert Instance.objects.count() == 0 and Job.objects.count() == 0


def test_user_data_not_utf8_is_a_400(api_client, host, image, tiny_flavor):
    # A lone surrogate is valid JSON text but no UTF-8 byte string.
    body = (
        f'{{"name": "vm1", "image": {image.pk}, "flavor": {tiny_flavor.pk}, '
        '"user_data": "#!/bin/sh\\n\\ud800"}'
    )
    resp = api_client.post("/api/v1/instances/", body, content_type="application/json")
    assert resp.status_code == 400, resp.content
    # DRF refuses it first, on the field: "Surrogate characters are not allowed".
    assert "Surrogate" in resp.json()["errors"]["user_data"][0]
    assert Instance.objects.count() == 0


def test_only_the_callers_own_keypairs(
    member_user, admin_user, default_project, host, image, tiny_flavor, public_key
):
    from cloudpanel.projects.models import Membership

    Membership.objects.create(user=member_user, project=default_project, role="member")
    admins_key = keypair_create(user=admin_user, name="adm", public_key=public_key)
    alices_key = keypair_create(user=member_user, name="mine", public_key=public_key)
    alice = client_for(member_user)
    resp = create(alice, image, tiny_flavor, keypairs=[admins_key.pk])
    assert resp.status_code == 400
    assert resp.json()["errors"]["keypairs"] == [f"Unknown key pair {admins_key.pk}."]
    assert create(alice, image, tiny_flavor, keypairs=[alices_key.pk]).status_code == 202
    # Admins may hand any user's key to an instance.
    resp = client_for(admin_user).post(
        "/api/v1/instances/",
        {"name": "vm2", "image": image.pk, "flavor": tiny_flavor.pk, "keypairs": [alices_key.pk]},
        format="json",
    )
    assert resp.status_code == 202, resp.content


def test_an_image_without_cloud_init_refuses_identity_and_gets_no_seed(admin_user):
    image = Image(name="plain-os")
    image.cloud_init = False
    with pytest.raises(InvalidInput) as exc:
        Create._identity(
            admin_user, image, "vm1", keypairs=None, user_data=None, hostname="h", password=None
        )
    assert "does not run cloud-init" in exc.value.message_dict["hostname"][0]
    no_input = {"keypairs": None, "user_data": None, "hostname": None, "password": None}
    assert Create._identity(admin_user, image, "vm1", **no_input) is None


def test_an_image_with_cloud_init_always_gets_a_seed(admin_user):
    image = Image(name="cloud-os")
    image.cloud_init = True
    no_input = {"keypairs": None, "user_data": None, "hostname": None, "password": None}
    identity = Create._identity(admin_user, image, "Vm_1", **no_input)
    assert identity["hostname"] == "vm-1" and identity["ssh_keys"] == []
    assert identity["password_hash"] is None


def test_a_password_needs_an_image_with_a_default_user(admin_user):
    image = Image(name="anon-os")
    image.cloud_init, image.default_user = True, ""
    with pytest.raises(InvalidInput) as exc:
        Create._identity(
            admin_user, image, "vm1", keypairs=None, user_data=None, hostname=None, password="pw"
        )
    assert "no default user" in exc.value.message_dict["password"][0]
    image.default_user = "debian"
    identity = Create._identity(
        admin_user, image, "vm1", keypairs=None, user_data=None, hostname=None, password="pw"
    )
    assert identity["password_hash"].startswith("$6$")
