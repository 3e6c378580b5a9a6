"""Key pairs: which keys are taken (parsed with cryptography), their fingerprints (as
ssh-keygen prints them), and the API: each user sees and manages their own, admins all."""

from __future__ import annotations

import subprocess

import pytest
from rest_framework.test import APIClient

from cloudpanel.errors import InvalidInput
from instances.keypairs import parse_public_key
from instances.models import KeyPair

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    """Fresh keys from ssh-keygen: {label: path of the .pub file}."""
    base = tmp_path_factory.mktemp("keys")
    specs = {
        "ed25519": ["-t", "ed25519"],
        "ecdsa256": ["-t", "ecdsa", "-b", "256"],
        "ecdsa384": ["-t", "ecdsa", "-b", "384"],
        "ecdsa521": ["-t", "ecdsa", "-b", "521"],
        "rsa2048": ["-t", "rsa", "-b", "2048"],
        "rsa1024": ["-t", "rsa", "-b", "1024"],
    }
    out = {}
    for label, args in specs.items():
        path = base / label
        subprocess.run(
            ["ssh-keygen", "-q", *args, "-N", "", "-C", f"me@{label}", "-f", str(path)],
            check=True,
        )
        out[label] = str(path) + ".pub"
    return out


def keygen_fingerprint(path: str) -> str:
    return subprocess.run(
        ["ssh-keygen", "-lf", path], check=True, capture_output=True, text=True
    ).stdout.split()[1]


def text(path: str) -> str:
    with open(path) as fh:
        return fh.read()


@pytest.mark.parametrize(
    "label,prefix",
    [
        ("ed25519", "ssh-ed25519 "),
        ("ecdsa256", "ecdsa-sha2-nistp256 "),
        ("ecdsa384", "ecdsa-sha2-nistp384 "),
        ("ecdsa521", "ecdsa-sha2-nistp521 "),
        ("rsa2048", "ssh-rsa "),
    ],
)
def test_good_keys_are_normalized_with_ssh_keygen_fingerprint(keys, label, prefix):
    line, fingerprint = parse_public_key("  " + text(keys[label]).strip() + "\n")
    assert line.startswith(prefix)
    assert line.endswith(f" me@{label}")
    assert line == text(keys[label]).strip()
    assert fingerprint == keygen_fingerprint(keys[label])


def test_comment_is_optional(keys):
    kind, body, _comment = text(keys["ed25519"]).split()
    assert parse_public_key(f"{kind} {body}")[0] == f"{kind} {body}"


@pytest.mark.parametrize(
    "value,problem",
    [
        ("", "required"),
        ("garbage", "expected"),
        ("ssh-ed25519 !!!notbase64", "base64"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBad", "Not a valid ssh-ed25519"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "ssh-dss is not supported"),
        ("sk-ssh-ed25519@openssh.com AAAA", "not supported"),
    ],
)
def test_bad_keys_are_refused_naming_the_problem(value, problem):
    with pytest.raises(InvalidInput) as exc:
        parse_public_key(value)
    assert problem in " ".join(exc.value.message_dict["public_key"])


def test_rsa_below_2048_bits_is_refused(keys):
    with pytest.raises(InvalidInput) as exc:
        parse_public_key(text(keys["rsa1024"]))
    assert "1024 bits" in exc.value.message_dict["public_key"][0]


def test_a_key_whose_type_and_body_disagree_is_refused(keys):
    body = text(keys["ed25519"]).split()[1]
    with pytest.raises(InvalidInput):
        parse_public_key(f"ssh-rsa {body}")


def test_two_keys_on_two_lines_are_refused(keys):
    with pytest.raises(InvalidInput) as exc:
        parse_public_key(text(keys["ed25519"]) + text(keys["ecdsa256"]))
    assert "one line" in exc.value.message_dict["public_key"][0]


# ---- API ----------------------------------------------------------------------------------


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_import_list_retrieve_delete_own_keys(keys, member_user, django_user_model):
    alice = client_for(member_user)
    resp = alice.post(
        "/api/v1/keypairs/", {"name": "laptop", "public_key": text(keys["ed25519"])}, format="json"
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["fingerprint"] == keygen_fingerprint(keys["ed25519"])
    assert body["owner"] == "alice"
    assert body["public_key"] == text(keys["ed25519"]).strip()
    assert [k["name"] for k in alice.get("/api/v1/keypairs/").json()["results"]] == ["laptop"]
    assert alice.get(f"/api/v1/keypairs/{body['id']}/").json()["name"] == "laptop"

    # The same name again is refused for the same owner, not for another user.
    again = alice.post(
        "/api/v1/keypairs/", {"name": "laptop", "public_key": text(keys["rsa2048"])}, format="json"
    )
    assert again.status_code == 400 and "name" in again.json()["errors"]
    bob_user = django_user_model.objects.create_user("bob", password="pw-bob-123")
    bob = client_for(bob_user)
    resp = bob.post(
        "/api/v1/keypairs/", {"name": "laptop", "public_key": text(keys["rsa2048"])}, format="json"
    )
    assert resp.status_code == 201, resp.content

    # Nobody sees or deletes another user's key.
    assert [k["owner"] for k in bob.get("/api/v1/keypairs/").json()["results"]] == ["bob"]
    assert bob.get(f"/api/v1/keypairs/{body['id']}/").status_code == 404
    assert bob.delete(f"/api/v1/keypairs/{body['id']}/").status_code == 404
    assert alice.delete(f"/api/v1/keypairs/{body['id']}/").status_code == 204
    assert not KeyPair.objects.filter(pk=body["id"]).exists()


def test_admins_see_and_delete_every_key(keys, member_user, api_client):
    alice = client_for(member_user)
    made = alice.post(
        "/api/v1/keypairs/", {"name": "k1", "public_key": text(keys["ecdsa384"])}, format="json"
    ).json()
    listed = api_client.get("/api/v1/keypairs/").json()["results"]
    assert [(k["name"], k["owner"]) for k in listed] == [("k1", "alice")]
    assert api_client.delete(f"/api/v1/keypairs/{made['id']}/").status_code == 204


def test_api_bad_key_is_a_400_naming_the_problem(keys, member_user, anon_client):
    alice = client_for(member_user)
    resp = alice.post(
        "/api/v1/keypairs/", {"name": "old", "public_key": text(keys["rsa1024"])}, format="json"
    )
    assert resp.status_code == 400
    assert "2048" in resp.json()["errors"]["public_key"][0]
    resp = alice.post("/api/v1/keypairs/", {"name": "x", "public_key": "nope"}, format="json")
    assert resp.status_code == 400 and "public_key" in resp.json()["errors"]
    resp = alice.post(
        "/api/v1/keypairs/",
        {"name": "bad name!", "public_key": text(keys["ed25519"])},
        format="json",
    )
    assert resp.status_code == 400 and "name" in resp.json()["errors"]
    assert KeyPair.objects.count() == 0
    assert anon_client.get("/api/v1/keypairs/").status_code in (401, 403)
