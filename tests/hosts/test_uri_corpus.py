"""A hostile corpus of host URIs against the validator, with libvirt's own parser as referee.

For every string: where libvirt and our parser both read it, they read the same fields; the
validator either refuses it, or accepts it with fields libvirt reads the same way, from the
raw string and from the rebuilt one (which is all the panel ever stores and opens).
"""

import pytest
from django.core.exceptions import ValidationError

from hosts.uris import fields_of, libvirt_parse, parse_host_uri

from .libvirt_uri_oracle import virURIParse

SOCK = "/run/libvirt/libvirt-sock"

# (raw URI, the canonical form it is stored as)
ACCEPTED = [
    ("qemu:///system", "qemu:///system"),
    ("qemu:///session", "qemu:///session"),
    ("qemu+ssh://root@hv1.example.org/system", "qemu+ssh://root@hv1.example.org/system"),
    ("qemu+ssh://root@HV1.Example.ORG:2222/system", "qemu+ssh://root@hv1.example.org:2222/system"),
    ("qemu+libssh2://admin_1@10.0.0.5/system", "qemu+libssh2://admin_1@10.0.0.5/system"),
    ("qemu+ssh://h/system?no_verify=1;mode=direct", "qemu+ssh://h/system?no_verify=1&mode=direct"),
    ("qemu+ssh://h/system?NO_VERIFY=%31", "qemu+ssh://h/system?no_verify=1"),
    ("qemu+ssh://h/system?no%5Fverify=0", "qemu+ssh://h/system?no_verify=0"),
    ("qemu+tls://hv2/system?no_verify=1", "qemu+tls://hv2/system?no_verify=1"),
    ("qemu+tcp://127.0.0.1:16509/system", "qemu+tcp://127.0.0.1:16509/system"),
    ("qemu+tcp://127.0.0.1:0/system", "qemu+tcp://127.0.0.1/system"),
    ("qemu+tcp://[::1]:16509/system", "qemu+tcp://[::1]:16509/system"),
    ("qemu+tcp://[0:0::1]/system", "qemu+tcp://[::1]/system"),
    ("qemu:///sys%74em", "qemu:///system"),
    (f"qemu+unix:///system?socket={SOCK}", f"qemu+unix:///system?socket={SOCK}"),
    (
        "qemu+unix:///system?socket=/var/run/libvirt/libvirt-sock",
        f"qemu+unix:///system?socket={SOCK}",
    ),
    (
        "qemu+unix:///system?socket=/run/libvirt/x/../libvirt-sock",
        f"qemu+unix:///system?socket={SOCK}",
    ),
    ("test:///default", "test:///default"),
    ("test:///default?x=1", "test:///default?x=1"),  # ignored by the test driver
]

REFUSED = [
    # parameters hidden behind ';' or encoded separators
    "qemu+ssh://root@h/system?no_verify=1;command=/tmp/x",
    "qemu+ssh://root@h/system?no_verify=1;netcat=/tmp/x",
    "qemu+ssh://h/system?mode=auto&no_verify=1;keyfile=/etc/shadow",
    "qemu+ssh://h/system?no_verify=1;mode=auto&keyfile=/etc/shadow",
    "qemu+ssh://h/system?no_verify=1%3Bcommand=/tmp/x",
    "qemu+ssh://h/system?no_verify=1%26command=/tmp/x",
    "qemu+ssh://h/system?no_verify%3D1%26command=/tmp/x",
    "qemu+ssh://h/system?%63ommand=/tmp/x",
    "qemu+ssh://h/system?COMMAND=/tmp/x",
    "qemu+ssh://h/system?Netcat=/tmp/x",
    f"qemu+unix:///system?socket={SOCK}%3Bcommand=/tmp/x",
    f"qemu+unix:///system?socket={SOCK};command=/tmp/x",
    f"qemu+unix:///system?socket={SOCK}&command=/tmp/x",
    # programs and local files, whatever the transport
    "qemu+ssh://h/system?command=/tmp/x",
    "qemu+ssh://h/system?netcat=/tmp/x",
    "qemu+ssh://h/system?proxy=netcat",
    "qemu+ssh://h/system?keyfile=/root/.ssh/id_rsa",
    "qemu+ssh://h/system?known_hosts=/tmp/kh",
    "qemu+ssh://h/system?known_hosts_verify=ignore",
    "qemu+ssh://h/system?sshauth=agent",
    "qemu+ssh://h/system?no_tty=1",
    "qemu+ssh://h/system?authfile=/etc/shadow",
    "qemu+ssh://h/system?name=qemu:///session",
    "qemu+ssh://h/system?auth=sasl",
    "qemu+tls://h/system?pkipath=/tmp/pki",
    "qemu+tls://h/system?tls_priority=NORMAL",
    "qemu+tcp://h/system?no_sanity=1",
    "qemu:///system?command=/tmp/x",
    "qemu:///system?mode=legacy",
    f"qemu:///system?socket={SOCK}",
    "qemu+ext:///system?command=/bin/sh",
    # duplicated and malformed parameters
    "qemu+ssh://h/system?no_verify=0&no_verify=1",
    f"qemu+unix:///system?socket={SOCK}&SOCKET=/tmp/evil",
    "qemu+ssh://h/system?mode=bogus",
    "qemu+ssh://h/system?mode=",
    "qemu+ssh://h/system?mode",
    "qemu+ssh://h/system?no_verify=yes",
    "qemu+ssh://h/system?",
    "qemu+ssh://h/system?&",
    "qemu+ssh://h/system?no_verify=1&",
    "qemu+ssh://h/system?=x",
    "qemu+ssh://h/system?no_verify=1&&mode=auto",
    "qemu+ssh://h/system?no_verify=%00",
    "qemu+ssh://h/system?no_verify=1%00;command=/tmp/x",
    "qemu+ssh://h/system?no_verify=%",
    "qemu+ssh://h/system?no_verify=%G1",
    "qemu+ssh://h/system?no_verify=%C3%A9",
    # sockets outside the allow-list
    "qemu+unix:///system?socket=/tmp/evil.sock",
    "qemu+unix:///system?socket=/run/libvirt/../../tmp/evil",
    "qemu+unix:///system?socket=/run/libvirtX/sock",
    "qemu+unix:///system?socket=/run/libvirt",
    "qemu+unix:///system?socket=/run/libvirt/",
    "qemu+unix:///system?socket=relative/sock",
    "qemu+unix:///system?socket=/run/libvirt/a%0Ab",
    "qemu+unix:///system?socket=/run/libvirt/a%20b",
    "qemu+unix:///system",
    # user and host that ssh would read as options, or that hide something
    "qemu+ssh://-oProxyCommand=/tmp/x@h/system",
    "qemu+ssh://-oProxyCommand%3D/tmp/x@h/system",
    "qemu+ssh://root@-oProxyCommand=/tmp/x/system",
    "qemu+ssh://-h/system",
    "qemu+ssh://root@-h/system",
    "qemu+ssh://user:password@h/system",
    "qemu+ssh://@h/system",
    "qemu+ssh://r%6Fot@h/system",
    "qemu+ssh://a@b@h/system",
    "qemu+ssh://ro;ot@h/system",
    "qemu+ssh://h%2Dx/system",
    "qemu+ssh://h;x/system",
    "qemu+ssh://h_x/system",
    "qemu+ssh://-/system",
    "qemu+ssh://h-/system",
    "qemu+ssh:///system",
    "qemu+tcp://:16509/system",
    "qemu+tcp://2130706433/system",
    "qemu+tcp://0x7f.1/system",
    "qemu+tcp://127.1/system",
    "qemu+tcp://999.1.1.1/system",
    "qemu+tcp://[fe80::1%25eth0]/system",
    "qemu+tcp://[::1/system",
    "qemu+tcp://[not-an-ip]/system",
    "qemu+tcp://[127.0.0.1]/system",
    "qemu+tcp://h:99999/system",
    "qemu+tcp://h:65536/system",
    "qemu+tcp://h:/system",
    "qemu+tcp://h:-1/system",
    "qemu+tcp://h:99999999999/system",
    "qemu://h/system",
    "qemu://user@/system",
    "qemu+unix://h/system?socket=/run/libvirt/libvirt-sock",
    # backslashes, whitespace, control characters
    "qemu+ssh://h\\@evil/system",
    "qemu+ssh://h\\system",
    "qemu+ssh://h /system",
    " qemu:///system",
    "qemu:///system ",
    "\tqemu:///system",
    "qemu:///system\n",
    "qemu:///system\r\n?command=/tmp/x",
    "qemu:///system\x00?command=/tmp/x",
    "qemu:///syst\x7fem",
    "qemu:///systém",
    # schemes, paths, fragments
    "QEMU:///system",
    "qemu+SSH://h/system",
    "xen:///system",
    "lxc:///system",
    "http://h/",
    "qemu+ssh+tls://h/system",
    "qemu:/system",
    "qemu:system",
    "qemu:///embed?root=/tmp/x",
    "qemu:///system/../session",
    "qemu:///System",
    "qemu://",
    "qemu+ssh://h/system#frag",
    "qemu+ssh://h/system#",
    "qemu+ssh://h/system?#",
    "qemu+ssh://h/system?no_verify=1#;command=/tmp/x",
    "test:///etc/passwd",
    "test:///default?command=/tmp/x",
    "test:///default?x=1;socket=/tmp/evil",
    "test:///default?x=1%3B",
    "test:///default?x=1&x=2",
    "test://h/default",
    "test:/default",
    # sizes
    "",
    "qemu+tcp://" + "a" * 600 + "/system",
    "qemu+tcp://" + ".".join(["a" * 63] * 5) + "/system",
    "qemu+ssh://h/system?no_verify=" + "1" * 1000,
    "qemu+ssh://" + "u" * 33 + "@h/system",
]


def _libvirt_fields(parsed: dict) -> tuple:
    params = tuple((name.lower(), value) for name, value in parsed["params"])
    return (
        parsed["scheme"],
        parsed["user"],
        parsed["server"],
        parsed["port"],
        parsed["path"],
        params,
    )


CORPUS = [uri for uri, _ in ACCEPTED] + REFUSED


@pytest.mark.parametrize("uri", CORPUS)
def test_our_parser_reads_what_libvirt_reads(uri):
    ours, theirs = libvirt_parse(uri), virURIParse(uri)
    if ours is None or theirs is None:
        return  # one of them cannot read it: then the validator must refuse (next test)
    assert (
        ours.scheme,
        ours.user,
        ours.server,
        ours.port,
        ours.path,
        ours.query,
        ours.fragment,
        ours.params,
    ) == tuple(theirs.values())


@pytest.mark.parametrize("uri", CORPUS)
def test_accepted_uris_mean_to_libvirt_exactly_what_was_validated(uri):
    try:
        host_uri = parse_host_uri(uri)
    except ValidationError:
        assert uri not in dict(ACCEPTED)
        return
    assert uri in dict(ACCEPTED), f"{uri!r} should have been refused"
    raw = virURIParse(uri)
    assert raw is not None and libvirt_parse(uri) is not None
    # No parameter hides in the raw string: libvirt sees the ones we validated, in order.
    assert [name.lower() for name, _ in raw["params"]] == [n for n, _ in host_uri.params]
    # The rebuilt URI, all the panel stores and opens, reads back as exactly these fields,
    # to libvirt and to our parser, and validates to itself.
    rebuilt = host_uri.uri
    assert rebuilt == dict(ACCEPTED)[uri]
    assert _libvirt_fields(virURIParse(rebuilt)) == host_uri.fields()
    assert fields_of(libvirt_parse(rebuilt)) == host_uri.fields()
    assert parse_host_uri(rebuilt) == host_uri


@pytest.mark.parametrize("uri", REFUSED)
def test_hostile_uris_are_refused_with_a_message(uri):
    with pytest.raises(ValidationError) as info:
        parse_host_uri(uri)
    assert info.value.messages[0]


def test_panel_parameters_are_appended_structurally():
    host_uri = parse_host_uri("qemu+ssh://root@h/system?no_verify=1")
    uri = host_uri.format((("keyfile", "/var/keys/host-1;command=x"), ("no_tty", "1")))
    assert virURIParse(uri)["params"] == (
        ("no_verify", "1"),
        ("keyfile", "/var/keys/host-1;command=x"),
        ("no_tty", "1"),
    )


# Pieces of URIs, glued at random (fixed seed): a few thousand strings the corpus above did
# not think of, each checked against libvirt's parser the same way.
PIECES = [
    "qemu",
    "qemu+ssh",
    "qemu+tcp",
    "qemu+unix",
    "test",
    ":",
    "//",
    "/",
    "@",
    "root",
    "-o",
    "h",
    "127.0.0.1",
    "[::1]",
    "[",
    "]",
    ":16509",
    ":0",
    "/system",
    "/default",
    "?",
    "#",
    "&",
    ";",
    "=",
    "%3B",
    "%26",
    "%3D",
    "%00",
    "%",
    "%2",
    "no_verify",
    "NO_VERIFY",
    "1",
    "mode",
    "auto",
    "command",
    "netcat",
    "keyfile",
    "socket",
    SOCK,
    "/tmp/x",
    "\\",
    " ",
    "..",
    "%2F",
    "%40",
    "%5B",
]


def _fuzz(n: int) -> list[str]:
    import random

    rng = random.Random(6)
    prefixes = ["qemu+ssh://", "qemu+tcp://", "qemu+unix:///system?", "qemu:///", "test://"]
    return [
        rng.choice(prefixes) + "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 9)))
        for _ in range(n)
    ]


def test_random_uris_agree_with_libvirt():
    accepted = 0
    for uri in _fuzz(4000):
        ours, theirs = libvirt_parse(uri), virURIParse(uri)
        if ours is not None and theirs is not None:
            assert (
                ours.scheme,
                ours.user,
                ours.server,
                ours.port,
                ours.path,
                ours.query,
                ours.fragment,
                ours.params,
            ) == tuple(theirs.values()), uri
        try:
            host_uri = parse_host_uri(uri)
        except ValidationError:
            continue
        accepted += 1
        assert theirs is not None, uri
        assert [n.lower() for n, _ in theirs["params"]] == [n for n, _ in host_uri.params], uri
        assert _libvirt_fields(virURIParse(host_uri.uri)) == host_uri.fields(), uri
    assert accepted  # the generator does reach valid URIs
