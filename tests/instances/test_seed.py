"""The NoCloud seed and the identity checks behind it, without libvirt: the ISO is parsed
back with pycdlib, the password hash checked against openssl, the user-data limits hit."""

from __future__ import annotations

import email
import io
import subprocess

import pycdlib
import pytest
import yaml

from cloudpanel.errors import InvalidInput
from instances import seed

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeButParsedElsewhere me@laptop"


def files_of(data: bytes) -> tuple[str, dict[str, str]]:
    return seed.read_seed_iso(data)


def test_seed_iso_is_labelled_cidata_with_meta_and_user_data():
    data = seed.build_seed_iso(
        seed.seed_files(
            instance_id="0b6e4c1a-1111-2222-3333-444455556666",
            hostname="web-1",
            ssh_keys=[KEY],
            password_hash="$6$salt$hash",
            default_user="debian",
        )
    )
    label, files = files_of(data)
    assert label == "cidata"
    assert set(files) == {"meta-data", "user-data"}
    assert yaml.safe_load(files["meta-data"]) == {
        "instance-id": "0b6e4c1a-1111-2222-3333-444455556666",
        "local-hostname": "web-1",
    }
    assert files["user-data"].startswith("#cloud-config\n")
    config = yaml.safe_load(files["user-data"])
    assert config["hostname"] == "web-1"
    assert config["ssh_authorized_keys"] == [KEY]
    assert config["chpasswd"]["users"] == [
        {"name": "debian", "password": "$6$salt$hash", "type": "hash"}
    ]
    # The names a guest's kernel sees: Joliet (and Rock Ridge) carry the real file names.
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    joliet = {c.file_identifier().decode("utf-16-be") for c in iso.list_children(joliet_path="/")}
    iso.close()
    assert {"meta-data", "user-data"} <= joliet


def test_no_password_no_keys_writes_only_the_hostname():
    config = yaml.safe_load(
        seed.user_data(hostname="h", ssh_keys=[], password_hash=None, default_user=None)
    )
    assert config == {"hostname": "h", "preserve_hostname": False}


def test_user_cloud_config_is_merged_into_the_panels():
    user_text = (
        "#cloud-config\n"
        "hostname: sneaky\n"
        "ssh_authorized_keys: [ssh-rsa AAAAother other]\n"
        "runcmd: [[touch, /root/marker]]\n"
        "chpasswd: {expire: true}\n"
    )
    config = yaml.safe_load(
        seed.user_data(
            hostname="web-1",
            ssh_keys=[KEY],
            password_hash="$6$s$h",
            default_user="debian",
            user_text=user_text,
        )
    )
    assert config["hostname"] == "web-1"  # the hostname field decides
    assert config["ssh_authorized_keys"] == [KEY, "ssh-rsa AAAAother other"]
    assert config["runcmd"] == [["touch", "/root/marker"]]
    assert config["chpasswd"]["expire"] is True
    assert config["chpasswd"]["users"][0]["password"] == "$6$s$h"


def test_a_script_goes_with_the_panels_config_as_mime_multipart():
    text = seed.user_data(hostname="h", ssh_keys=[KEY], user_text="#!/bin/sh\ntouch /root/marker\n")
    message = email.message_from_string(text)
    assert message.is_multipart()
    parts = message.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/cloud-config", "text/x-shellscript"]
    config = yaml.safe_load(parts[0].get_payload(decode=True).decode())
    assert config["ssh_authorized_keys"] == [KEY]
    assert parts[1].get_payload(decode=True).decode() == "#!/bin/sh\ntouch /root/marker\n"


@pytest.mark.parametrize(
    "password,salt",
    [
        ("hunter2", "saltsaltsaltsalt"),
        ("a", "abc"),
        ("pässwörd ünïcode", "Zz09./"),
        ("x" * 200, "q"),
    ],
)
def test_password_hash_is_sha512_crypt_as_openssl_makes_it(password, salt):
    expected = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, password],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert seed.password_hash(password, salt=salt) == expected


def test_validate_password_returns_a_salted_hash_never_the_password():
    first, second = seed.validate_password("s3cret!"), seed.validate_password("s3cret!")
    assert first.startswith("$6$") and "s3cret" not in first
    assert first != second  # a fresh salt each time
    assert seed.validate_password("") is None and seed.validate_password(None) is None


def test_user_data_limits():
    limit = seed.USER_DATA_MAX
    assert seed.validate_user_data("#!/bin/sh\n" + "x" * (limit - 10)) is not None
    with pytest.raises(InvalidInput) as exc:
        seed.validate_user_data("#!/bin/sh\n" + "x" * (limit - 9))
    assert "65537 bytes" in exc.value.message_dict["user_data"][0]
    with pytest.raises(InvalidInput) as exc:
        seed.validate_user_data(b"#!/bin/sh\n\xff\xfe")
    assert "not UTF-8" in exc.value.message_dict["user_data"][0]
    with pytest.raises(InvalidInput) as exc:
        seed.validate_user_data("\ud800 lone surrogate")
    assert "not UTF-8" in exc.value.message_dict["user_data"][0]
    with pytest.raises(InvalidInput) as exc:
        seed.validate_user_data("#cloud-config\nruncmd: [unclosed\n")
    assert "not valid YAML" in exc.value.message_dict["user_data"][0]
    with pytest.raises(InvalidInput) as exc:
        seed.validate_user_data("#cloud-config\n- a\n- list\n")
    assert "mapping" in exc.value.message_dict["user_data"][0]
    # Not a cloud-config: anything cloud-init reads (scripts, includes) passes as text.
    assert seed.validate_user_data("#!/bin/bash\necho [unclosed") == "#!/bin/bash\necho [unclosed"
    assert seed.validate_user_data("#cloud-config\n") == "#cloud-config\n"


@pytest.mark.parametrize("good", ["web-1", "a", "x" * 63, "Node7"])
def test_good_hostnames(good):
    assert seed.validate_hostname(good) == good.lower()


@pytest.mark.parametrize("bad", ["-web", "web-", "x" * 64, "web_1", "a.b", "", "wé"])
def test_bad_hostnames(bad):
    with pytest.raises(InvalidInput) as exc:
        seed.validate_hostname(bad)
    assert "hostname" in exc.value.message_dict


def test_default_hostname_from_instance_name():
    assert seed.hostname_from_name("Web_1.prod") == "web-1-prod"
    assert seed.validate_hostname(seed.hostname_from_name("_x_")) == "x"
