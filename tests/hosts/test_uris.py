import pytest
from django.core.exceptions import ValidationError

from hosts.uris import default_console_address, transport_of, validate_uri

GOOD = [
    ("qemu:///system", "local"),
    ("qemu:///session", "local"),
    ("qemu+ssh://root@hv1.example.org/system", "ssh"),
    ("qemu+tls://hv2/system", "tls"),
    ("qemu+tcp://127.0.0.1:16509/system", "tcp"),
    ("qemu+unix:///system?socket=/run/lab/libvirt-sock", "unix"),
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
        "qemu:///system<script>",
    ],
)
def test_bad_uris_are_rejected(uri):
    with pytest.raises(ValidationError):
        validate_uri(uri)


def test_console_address_defaults_to_the_uri_host():
    assert default_console_address("qemu+ssh://root@hv1/system") == "hv1"
    assert default_console_address("qemu:///system") == "127.0.0.1"
