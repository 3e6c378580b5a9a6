import pytest
from django.core.exceptions import ValidationError

from hosts.uris import default_console_address, transport_of, validate_uri

GOOD = [
    ("qemu:///system", "local"),
    ("qemu:///session", "local"),
    ("qemu+ssh://root@hv1.example.org/system", "ssh"),
    ("qemu+tls://hv2/system", "tls"),
    ("qemu+tcp://127.0.0.1:16509/system", "tcp"),
    ("qemu+unix:///system?socket=/run/libvirt/libvirt-sock", "unix"),
    ("test:///default", "test"),
]


@pytest.mark.parametrize("uri,transport", GOOD)
def test_good_uris_validate_and_derive_transport(uri, transport):
    validate_uri(uri)
    assert transport_of(uri) == transport


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "not a uri",
        "http://example.org/",
        "xen:///system",
        "qemu+ssh:///system",  # no host
        "qemu+tcp://h:99999/system",
        "qemu://host/whatever",
        "qemu:///system?evil=1",
        "qemu+unix:///system?socket=relative/path",
        "qemu+unix:///system?socket=/tmp/elsewhere/libvirt-sock",
        "qemu+ssh://root@h/system?no_tty=1;command=/tmp/evil",
        "qemu:///system<script>",
    ],
)
def test_bad_uris_are_rejected(uri):
    with pytest.raises(ValidationError):
        validate_uri(uri)


def test_console_address_defaults_to_the_uri_host():
    assert default_console_address("qemu+ssh://root@hv1/system") == "hv1"
    assert default_console_address("qemu:///system") == "127.0.0.1"


def test_a_socket_dir_from_settings_is_allowed(settings, tmp_path):
    uri = f"qemu+unix:///system?socket={tmp_path}/libvirt-sock"
    with pytest.raises(ValidationError, match="LIBVIRT_SOCKET_DIRS"):
        validate_uri(uri)
    settings.LIBVIRT_SOCKET_DIRS = [str(tmp_path)]
    validate_uri(uri)


def test_the_socket_is_checked_where_its_symlinks_lead(settings, tmp_path):
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    (allowed / "link").symlink_to(elsewhere)
    settings.LIBVIRT_SOCKET_DIRS = [str(allowed)]
    with pytest.raises(ValidationError, match="not under an allowed directory"):
        validate_uri(f"qemu+unix:///system?socket={allowed}/link/libvirt-sock")
