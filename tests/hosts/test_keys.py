"""SSH private keys on disk: written only when they change, 0600, gone with their host."""

import os
import stat

import pytest

from hosts import keys
from hosts.connection import connection_uri
from hosts.models import Host
from hosts.services import host_create, host_delete, host_update
from hosts.uris import libvirt_parse

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nNOT-A-REAL-KEY\n-----END OPENSSH PRIVATE KEY-----\n"
URI = "qemu+ssh://root@127.0.0.1:1/system"  # nothing listens on port 1


@pytest.fixture
def keys_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path / "keys"


@pytest.fixture
def ssh_host(db, keys_dir):
    return host_create(name="remote", uri=URI, ssh_private_key=KEY, sync=False)


def test_the_key_file_is_private_and_holds_the_key(ssh_host, keys_dir):
    path = keys_dir / f"host-{ssh_host.pk}"
    assert path.read_text() == KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in keys_dir.iterdir()) == [path.name]  # no temporary left


def test_connection_uri_is_a_read_and_names_the_key_structurally(ssh_host, keys_dir):
    path = keys_dir / f"host-{ssh_host.pk}"
    before = path.stat()
    first, second = connection_uri(ssh_host), connection_uri(ssh_host)
    after = path.stat()
    assert first == second
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert libvirt_parse(first).params == (("keyfile", str(path)), ("no_tty", "1"))


def test_a_missing_key_file_is_restored_by_setup_never_by_a_read(ssh_host, keys_dir):
    path = keys_dir / f"host-{ssh_host.pk}"
    path.unlink()
    connection_uri(ssh_host)
    assert not path.exists()  # reading the URI writes nothing
    assert keys.restore_missing(Host.objects.all()) == [ssh_host.pk]
    assert path.read_text() == KEY and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.restore_missing(Host.objects.all()) == []  # once only


def test_changing_or_clearing_the_key_rewrites_or_removes_the_file(ssh_host, keys_dir):
    path = keys_dir / f"host-{ssh_host.pk}"
    inode = path.stat().st_ino
    host_update(host=ssh_host, ssh_private_key=KEY.replace("NOT-A-REAL", "ANOTHER"))
    assert "ANOTHER-KEY" in path.read_text()
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place
    host_update(host=ssh_host, ssh_private_key="")
    assert not path.exists()
    assert "keyfile" not in connection_uri(Host.objects.get(pk=ssh_host.pk))


def test_deleting_a_host_removes_its_key_and_writes_no_host_none(ssh_host, keys_dir):
    connection_uri(ssh_host)
    host_delete(host=ssh_host)
    assert list(keys_dir.iterdir()) == []


def test_no_key_file_is_ever_named_after_a_missing_id(db, keys_dir):
    from cloudpanel import crypto

    unsaved = Host(name="new", uri=URI, ssh_private_key_encrypted=crypto.encrypt(KEY))
    with pytest.raises(ValueError, match="id"):
        connection_uri(unsaved)
    assert not (keys_dir / "host-None").exists()


def test_a_bulk_delete_removes_the_key_too(ssh_host, keys_dir):
    Host.objects.filter(pk=ssh_host.pk).delete()  # as the Django admin's bulk action does
    assert list(keys_dir.iterdir()) == []


def test_setup_writes_missing_key_files_again(ssh_host, keys_dir):
    from django.core.management import call_command

    path = keys_dir / f"host-{ssh_host.pk}"
    path.unlink()
    with open(os.devnull, "w") as quiet:
        call_command("cloudpanel_setup", stdout=quiet)
    assert path.read_text() == KEY and stat.S_IMODE(path.stat().st_mode) == 0o600
