"""The key pairs page (list, import, delete: each user their own) and the create page's
cloud-init fields."""

from __future__ import annotations

import subprocess

import pytest
from django.test import Client

from instances.keypairs import keypair_create
from instances.models import Instance, KeyPair

from .conftest import make_image
from .test_create_identity import cloud_init_image_fields

pytestmark = pytest.mark.django_db
GIB = 1024**3


@pytest.fixture(scope="module")
def public_key(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("key") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(path)], check=True)
    return (path.parent / "id.pub").read_text()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_import_list_and_delete_on_the_page(member_user, django_user_model, public_key):
    alice = client_for(member_user)
    assert alice.get("/instances/keypairs/").status_code == 200
    resp = alice.post("/instances/keypairs/", {"name": "laptop", "public_key": public_key})
    assert resp.status_code == 302
    keypair = KeyPair.objects.get(owner=member_user, name="laptop")
    page = alice.get("/instances/keypairs/").content.decode()
    assert "laptop" in page and keypair.fingerprint in page

    # A bad key: the form again, with the problem under the field.
    resp = alice.post("/instances/keypairs/", {"name": "old", "public_key": "ssh-rsa AAAA"})
    assert resp.status_code == 200 and b"Not a valid ssh-rsa" in resp.content
    assert KeyPair.objects.count() == 1

    # Another user neither sees it nor deletes it.
    bob = client_for(django_user_model.objects.create_user("bob", password="pw-bob-123"))
    assert "laptop" not in bob.get("/instances/keypairs/").content.decode()
    assert bob.post(f"/instances/keypairs/{keypair.pk}/delete/").status_code == 404
    assert alice.post(f"/instances/keypairs/{keypair.pk}/delete/").status_code == 302
    assert not KeyPair.objects.exists()


def test_nav_links_to_key_pairs(member_user):
    assert b'href="/instances/keypairs/"' in client_for(member_user).get("/instances/").content


def test_create_page_passes_the_identity_with_the_password_hashed(
    admin_user, test_host, default_project, settings, tiny_flavor, public_key
):
    test_host.storage_pools = [{"name": "default", "active": True, "capacity_bytes": 100 * GIB}]
    test_host.save()
    image = make_image(default_project, settings, **cloud_init_image_fields())
    key = keypair_create(user=admin_user, name="k", public_key=public_key)
    admin = client_for(admin_user)
    page = admin.get("/instances/new/").content.decode()
    assert 'name="user_data"' in page and 'name="password"' in page and ">k<" in page
    form = {"name": "page-vm", "image": image.pk, "flavor": tiny_flavor.pk}
    resp = admin.post("/instances/new/", {**form, "user_data": "#cloud-config\n[1, 2]\n"})
    assert resp.status_code == 200 and b"mapping" in resp.content
    assert Instance.objects.count() == 0
    resp = admin.post(
        "/instances/new/",
        {**form, "keypairs": [key.pk], "hostname": "pg", "password": "page-secret"},
    )
    assert resp.status_code == 302
    identity = Instance.objects.get(name="page-vm").current_job.params["seed"]
    assert identity["hostname"] == "pg" and identity["keypairs"] == [key.pk]
    assert identity["password_hash"].startswith("$6$")
    assert "page-secret" not in str(identity)
