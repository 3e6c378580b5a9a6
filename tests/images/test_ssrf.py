"""URL imports can't be turned against the panel's own networks (SSRF), whatever the parser tricks.

A real HTTP listener on 127.0.0.1 records every connection it accepts. Tenants throw a corpus of
parser-differential URLs at it and it must record none. Admins may fetch from it, through the
pinned, checked address, and follow re-checked redirects. Name resolution is guarded: only
`localhost`, address literals and names a test fakes are ever looked up, and the server may only
ever connect to 127.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from cloudpanel.jobs.models import Job
from images import fetch
from images.models import Image

from .conftest import qemu_img, run_job, store_files

pytestmark = pytest.mark.django_db

URL = "/api/v1/images/"


class _Handler(BaseHTTPRequestHandler):
    """GET /redirect?to=X answers 302 to X (to itself without X); anything else: the image."""

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Host")))
        query = parse_qs(urlsplit(self.path).query)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", query.get("to", ["/redirect"])[0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.image.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Listener(ThreadingHTTPServer):
    """An HTTP server on loopback that records every connection and request."""

    daemon_threads = True

    def __init__(self, image: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.image = image
        self.connections: list[tuple[str, int]] = []
        self.requests: list[tuple[str, str]] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self):
        sock, address = super().get_request()
        self.connections.append(address)
        return sock, address


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("www") / "cloud.qcow2"
    qemu_img("create", "-f", "qcow2", str(path), "16M")
    return path


@pytest.fixture(scope="module")
def _module_listener(image_file):
    server = Listener(image_file)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def listener(_module_listener):
    _module_listener.connections.clear()
    _module_listener.requests.clear()
    return _module_listener


class Network:
    """What the code under test tried: name look-ups, and connections off loopback."""

    def __init__(self):
        self.fake_names: dict[str, list[list[str]]] = {}  # name -> answers, one per look-up
        self.lookups: list[str] = []
        self.outside_lookups: list[str] = []
        self.outside_connects: list[object] = []


@pytest.fixture(autouse=True)
def network(monkeypatch) -> Network:
    """Never a real DNS look-up of an outside name, never a connection off 127.0.0.0/8."""
    net = Network()
    real_getaddrinfo, real_create_connection = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in net.fake_names:
            net.lookups.append(name)
            answers = net.fake_names[name]
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port or 0, 0, 0) if ":" in a else (a, port or 0),
                )
                for a in addresses
            ]
        try:
            ipaddress.ip_address(name)  # a canonical literal: no look-up happens
        except (TypeError, ValueError):
            if name != "localhost":
                net.outside_lookups.append(name)
                raise socket.gaierror(
                    socket.EAI_NONAME, "outside names are not looked up here"
                ) from None
            net.lookups.append(name)
            # Resolved for real, but IPv4 only: tests connect to 127.0.0.0/8 and nothing else.
            return real_getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
        return real_getaddrinfo(host, port, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
        except ValueError:
            loopback = False
        if not loopback:
            net.outside_connects.append(address)
            raise ConnectionRefusedError(f"test guard: no connection to {host}")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    yield net
    assert net.outside_lookups == [], "the code looked up outside names"
    assert net.outside_connects == [], "the code connected off loopback"


def start_import(client, url, **fields):
    payload = {"name": "imported", "disk_format": "qcow2", "url": url, **fields}
    return client.post(URL, payload, format="json")


# Each is a way to make a URL look public to one parser while a client connects to loopback,
# or to reach loopback under another spelling. {port} is the listener's.
CORPUS = [
    # The reported one, and other backslash tricks (WHATWG treats \ as /, urlsplit does not).
    "http://127.0.0.1:{port}\\@example.com/cloud.qcow2",
    "http://127.0.0.1:{port}\\\\@example.com/cloud.qcow2",
    "http://example.com\\@127.0.0.1:{port}/cloud.qcow2",
    "http://127.0.0.1:{port}\\cloud.qcow2",
    "http:/\\127.0.0.1:{port}/cloud.qcow2",
    "http:\\\\127.0.0.1:{port}/cloud.qcow2",
    "http:\\/127.0.0.1:{port}/cloud.qcow2",
    # userinfo and @ tricks
    "http://example.com@127.0.0.1:{port}/cloud.qcow2",
    "http://user:pass@127.0.0.1:{port}/cloud.qcow2",
    "http://127.0.0.1:{port}@example.com/cloud.qcow2",
    "http://example.com:80@127.0.0.1:{port}/cloud.qcow2",
    "http://example.com%40127.0.0.1:{port}/cloud.qcow2",
    "http://127.0.0.1:{port}%2f@example.com/cloud.qcow2",
    "http://127.0.0.1:{port}?@example.com/cloud.qcow2",
    "http://127.0.0.1:{port}/@example.com/cloud.qcow2",
    "http://[::1]@example.com:{port}/cloud.qcow2",
    # fragments
    "http://example.com#@127.0.0.1:{port}/cloud.qcow2",
    "http://127.0.0.1:{port}#@example.com/cloud.qcow2",
    "http://127.0.0.1:{port}/cloud.qcow2#x",
    # encoded dots and percent-encoded hosts
    "http://127%2e0%2e0%2e1:{port}/cloud.qcow2",
    "http://%31%32%37.0.0.1:{port}/cloud.qcow2",
    "http://127.0.0.1:{port}/%2e%2e/cloud.qcow2",
    "http://127.0.0.1:{port}/a/%2e%2e/cloud.qcow2",
    # IPv6 forms of loopback and of internal IPv4
    "http://[::1]:{port}/cloud.qcow2",
    "http://[0:0:0:0:0:0:0:1]:{port}/cloud.qcow2",
    "http://[::ffff:127.0.0.1]:{port}/cloud.qcow2",
    "http://[0:0:0:0:0:ffff:7f00:1]:{port}/cloud.qcow2",
    "http://[::ffff:7f00:1]:{port}/cloud.qcow2",
    "http://[::127.0.0.1]:{port}/cloud.qcow2",
    "http://[2002:7f00:1::]:{port}/cloud.qcow2",
    "http://[64:ff9b::7f00:1]:{port}/cloud.qcow2",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/cloud.qcow2",
    "http://[::1%25lo]:{port}/cloud.qcow2",
    "http://[fe80::1]:{port}/cloud.qcow2",
    "http://[::]:{port}/cloud.qcow2",
    "http://[::ffff:0.0.0.0]:{port}/cloud.qcow2",
    "http://::1:{port}/cloud.qcow2",
    # IPv4 spellings libc accepts
    "http://2130706433:{port}/cloud.qcow2",
    "http://0177.0.0.1:{port}/cloud.qcow2",
    "http://0177.1:{port}/cloud.qcow2",
    "http://0x7f.1:{port}/cloud.qcow2",
    "http://0x7f000001:{port}/cloud.qcow2",
    "http://0x7f.0x0.0x0.0x1:{port}/cloud.qcow2",
    "http://127.1:{port}/cloud.qcow2",
    "http://127.0.1:{port}/cloud.qcow2",
    "http://127.000.000.001:{port}/cloud.qcow2",
    "http://0.0.0.0:{port}/cloud.qcow2",
    "http://0:{port}/cloud.qcow2",
    "http://127.0.0.1:{port}/cloud.qcow2",
    "http://127.0.0.2:{port}/cloud.qcow2",
    "https://127.0.0.1:{port}/cloud.qcow2",
    # names
    "http://localhost:{port}/cloud.qcow2",
    "http://LOCALHOST:{port}/cloud.qcow2",
    "http://localhost.:{port}/cloud.qcow2",
    "http://127.0.0.1.:{port}/cloud.qcow2",
    "http://127.0.0.1..:{port}/cloud.qcow2",
    "http://local_host:{port}/cloud.qcow2",
    "http://127\u30020\u30020\u30021:{port}/cloud.qcow2",
    "http://\u2460\u2461\u2466.0.0.1:{port}/cloud.qcow2",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:{port}/cloud.qcow2",
    # whitespace and control characters
    "http://127.0.0.1\t:{port}/cloud.qcow2",
    "http://127.0.0.1:{port}/cloud.qcow2\n",
    "http://127.0.0.1:{port}/cloud\r\n.qcow2",
    "http://127.0.0.1:{port}/cloud.qcow2\r\nHost: example.com",
    "http://127.0.0.1:{port}/a b",
    " http://127.0.0.1:{port}/cloud.qcow2",
    "http://127.0.0.1:{port}\x00@example.com/cloud.qcow2",
    "http://127.0.0.1:{port}\x7f/cloud.qcow2",
    # schemes and slashes
    "HTTP://127.0.0.1:{port}/cloud.qcow2",
    "HtTpS://127.0.0.1:{port}/cloud.qcow2",
    "http:127.0.0.1:{port}/cloud.qcow2",
    "http:/127.0.0.1:{port}/cloud.qcow2",
    "http:///127.0.0.1:{port}/cloud.qcow2",
    "//127.0.0.1:{port}/cloud.qcow2",
    "127.0.0.1:{port}/cloud.qcow2",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/_GET%20/",
    # ports
    "http://127.0.0.1:{port}:80/cloud.qcow2",
    "http://127.0.0.1:0{port}/cloud.qcow2",
    "http://127.0.0.1:/cloud.qcow2",
    "http://127.0.0.1:99999/cloud.qcow2",
    # a redirect from loopback is loopback too
    "http://127.0.0.1:{port}/redirect?to=http://localhost:{port}/cloud.qcow2",
]


@pytest.mark.parametrize("template", CORPUS)
def test_tenant_reaches_nothing_internal(template, member_client, listener):
    url = template.format(port=listener.port)
    response = start_import(member_client, url)
    if response.status_code == 202:  # accepted at the door: the job must still refuse
        job = run_job(response.json()["id"])
        assert job.status == "failed", url
    else:
        assert response.status_code == 400, (url, response.content)
        assert response.json()["errors"]["url"], url
    # And the job's path alone refuses too, even without the check at the door.
    with pytest.raises(fetch.DownloadError), fetch.open_url(url, public_only=True):
        pass
    assert listener.connections == [], url
    assert store_files() == []
    assert not Image.objects.filter(status="active").exists()


@pytest.mark.parametrize(
    "template, message",
    [
        ("http://127.0.0.1:{port}\\@example.com/cloud.qcow2", "backslashes"),
        ("http://admin:secret@127.0.0.1:{port}/cloud.qcow2", "user name or password"),
        ("http://127.0.0.1:{port}/cloud.qcow2\n", "control characters"),
        ("http://127.0.0.1:{port}/a b", "spaces"),
        ("http://127.0.0.1:{port}/cloud.qcow2#x", "fragment"),
        ("http://0177.0.0.1:{port}/cloud.qcow2", "four decimal numbers"),
        ("http://localhost.:{port}/cloud.qcow2", "not a valid host name"),
        ("http://127%2e0%2e0%2e1:{port}/cloud.qcow2", "not a valid host"),
        ("ftp://127.0.0.1:{port}/cloud.qcow2", "http:// or https://"),
    ],
)
def test_malformed_urls_are_refused_for_admins_too(template, message, api_client, listener):
    response = start_import(api_client, template.format(port=listener.port))
    assert response.status_code == 400
    assert message in response.json()["errors"]["url"][0]
    assert listener.connections == []
    assert not Image.objects.exists() and not Job.objects.exists()


def test_the_import_form_refuses_malformed_urls(client, member_user, project_a, listener):
    from cloudpanel.projects.models import Membership

    Membership.objects.create(project=project_a, user=member_user, role="member")
    client.force_login(member_user)
    data = {
        "name": "imported",
        "disk_format": "qcow2",
        "visibility": "project",
        "url": f"http://127.0.0.1:{listener.port}\\@example.com/cloud.qcow2",
    }
    response = client.post("/images/import/", data)
    assert response.status_code == 400
    assert "must not contain backslashes" in response.content.decode()
    data["url"] = f"http://127.0.0.1:{listener.port}/cloud.qcow2"
    response = client.post("/images/import/", data)
    assert response.status_code == 400
    assert "only administrators may import from those" in response.content.decode()
    assert listener.connections == [] and not Image.objects.exists()


# ---------------------------------------------------------------- admins


def test_admin_import_from_loopback_goes_to_the_resolved_address(api_client, listener, network):
    url = f"http://localhost:{listener.port}/cloud.qcow2"
    response = start_import(api_client, url)
    assert response.status_code == 202, response.content
    job = run_job(response.json()["id"])
    assert job.status == "succeeded", job.error
    assert Image.objects.get().status == "active"
    assert listener.requests == [("/cloud.qcow2", f"localhost:{listener.port}")]
    assert network.lookups == ["localhost"]  # once, in the job; the connection used its answer


def test_dns_rebinding_cannot_switch_the_address(api_client, listener, network):
    """The name is resolved once per hop and the connection goes to that answer."""
    network.fake_names["rebind.test"] = [["127.0.0.1"], ["127.0.0.3"]]  # nothing on .3
    response = start_import(api_client, f"http://rebind.test:{listener.port}/cloud.qcow2")
    job = run_job(response.json()["id"])
    assert job.status == "succeeded", job.error
    assert network.lookups == ["rebind.test"]
    assert listener.requests == [("/cloud.qcow2", f"rebind.test:{listener.port}")]


def test_tenant_check_is_repeated_in_the_job(member_client, listener, network):
    """Public when the request was checked, loopback when the job runs: refused."""
    network.fake_names["rebind.test"] = [["1.1.1.1"], ["127.0.0.1"]]
    response = start_import(member_client, f"http://rebind.test:{listener.port}/cloud.qcow2")
    assert response.status_code == 202, response.content
    job = run_job(response.json()["id"])
    assert job.status == "failed" and "only administrators" in job.error
    assert listener.connections == []


def test_every_resolved_address_is_checked(listener, network):
    network.fake_names["mixed.test"] = [["1.1.1.1", "127.0.0.1"]]
    url = f"http://mixed.test:{listener.port}/cloud.qcow2"
    with (
        pytest.raises(fetch.RefusedURL, match="does not resolve to public addresses only"),
        fetch.open_url(url, public_only=True),
    ):
        pass
    assert listener.connections == [] and network.outside_connects == []


def test_admin_follows_a_redirect_to_another_loopback_url(api_client, listener):
    target = quote(f"http://localhost:{listener.port}/cloud.qcow2", safe="")
    url = f"http://127.0.0.1:{listener.port}/redirect?to={target}"
    job = run_job(start_import(api_client, url).json()["id"])
    assert job.status == "succeeded", job.error
    assert listener.requests == [
        (f"/redirect?to={target}", f"127.0.0.1:{listener.port}"),
        ("/cloud.qcow2", f"localhost:{listener.port}"),
    ]


def test_admin_redirect_hops_go_through_the_strict_parser(api_client, listener):
    evil = quote(f"http://127.0.0.1:{listener.port}\\@example.com/cloud.qcow2", safe="")
    url = f"http://127.0.0.1:{listener.port}/redirect?to={evil}"
    job = run_job(start_import(api_client, url).json()["id"])
    assert job.status == "failed"
    assert "redirects to a refused URL" in job.error and "backslashes" in job.error
    assert len(listener.requests) == 1  # the redirect itself, never its target
    assert store_files() == []


def test_admin_relative_redirect_and_the_redirect_limit(api_client, listener):
    url = f"http://127.0.0.1:{listener.port}/redirect?to=/cloud.qcow2"
    assert run_job(start_import(api_client, url).json()["id"]).status == "succeeded"
    listener.requests.clear()
    loop = f"http://127.0.0.1:{listener.port}/redirect"
    job = run_job(start_import(api_client, loop, name="loop").json()["id"])
    assert job.status == "failed" and "redirects more than" in job.error
    assert len(listener.requests) == fetch.MAX_REDIRECTS + 1


def test_tenant_redirect_is_refused(member_client, listener, monkeypatch):
    real = fetch.internal_reason
    # Stand in for a public server: the listener's address counts as public here, only.
    monkeypatch.setattr(
        fetch,
        "internal_reason",
        lambda ip: None if ip == ipaddress.ip_address("127.0.0.1") else real(ip),
    )
    url = f"http://127.0.0.1:{listener.port}/redirect?to=/cloud.qcow2"
    response = start_import(member_client, url)
    assert response.status_code == 202, response.content
    job = run_job(response.json()["id"])
    assert job.status == "failed" and "do not follow redirects" in job.error
    assert [path for path, _host in listener.requests] == ["/redirect?to=/cloud.qcow2"]
    assert store_files() == []


# ---------------------------------------------------------------- https


@pytest.fixture(scope="module")
def tls_listener(image_file, tmp_path_factory):
    """An https listener on 127.0.0.1 with a certificate for 'localhost' from a test CA."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=cloudpanel test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
            "-subj", "/CN=localhost")  # fmt: skip
    (d / "ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext")  # fmt: skip
    server = Listener(image_file)
    server.server_names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "srv.pem", d / "srv.key")
    context.sni_callback = lambda sock, name, ctx: server.server_names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, d / "ca.pem"
    server.shutdown()
    server.server_close()


@pytest.fixture
def trust_test_ca(tls_listener, monkeypatch):
    server, ca = tls_listener
    server.requests.clear()
    server.server_names.clear()
    real = ssl.create_default_context
    monkeypatch.setattr(fetch.ssl, "create_default_context", lambda: real(cafile=str(ca)))
    return server


def test_https_verifies_the_certificate_against_the_url_host(api_client, trust_test_ca):
    server = trust_test_ca
    job = run_job(start_import(api_client, f"https://localhost:{server.port}/x.qcow2").json()["id"])
    assert job.status == "succeeded", job.error
    assert server.server_names == ["localhost"]  # SNI from the URL, connection to the address
    assert server.requests == [("/x.qcow2", f"localhost:{server.port}")]
    # The same server by its address: the certificate does not name it.
    job = run_job(
        start_import(api_client, f"https://127.0.0.1:{server.port}/x.qcow2", name="b").json()["id"]
    )
    assert job.status == "failed" and "certificate" in job.error.lower()


def test_https_refuses_an_untrusted_certificate(api_client, tls_listener):
    server, _ca = tls_listener
    job = run_job(start_import(api_client, f"https://localhost:{server.port}/x.qcow2").json()["id"])
    assert job.status == "failed" and "certificate verify failed" in job.error.lower()


# ---------------------------------------------------------------- the parser itself


@pytest.mark.parametrize(
    "url, rebuilt",
    [
        ("http://example.org/a.qcow2", "http://example.org/a.qcow2"),
        ("HTTPS://Example.ORG:443/a?b=c&d=%20", "https://example.org/a?b=c&d=%20"),
        ("http://example.org:8080", "http://example.org:8080/"),
        ("http://example.org?x", "http://example.org/?x"),
        ("http://[2001:DB8::1]:8000/x", "http://[2001:db8::1]:8000/x"),
        ("http://192.0.2.10/x@y", "http://192.0.2.10/x@y"),
        ("http://xn--bcher-kva.example/x", "http://xn--bcher-kva.example/x"),
    ],
)
def test_accepted_urls_are_rebuilt_from_their_fields(url, rebuilt):
    assert fetch.parse_url(url).url == rebuilt


@pytest.mark.parametrize(
    "address, internal",
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", True),  # v4-mapped: reserved, no DNS answer needs it
        ("10.0.0.1", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("100.64.0.1", True),  # carrier-grade NAT
        ("169.254.169.254", True),
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("0.0.0.0", True),
        ("fc00::1", True),
        ("fe80::1", True),
        ("fec0::1", True),
        ("ff02::1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("2002:a00:1::", True),  # 6to4 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
    ],
)
def test_internal_addresses(address, internal):
    assert (fetch.internal_reason(ipaddress.ip_address(address)) is not None) is internal


def test_tenants_cannot_tell_internal_names_from_unknown_ones(member_client, network):
    # Either answer would map the panel's internal DNS for a tenant: both read the same.
    network.fake_names["intranet.test"] = [["10.1.2.3"]]
    answers = [
        start_import(member_client, f"http://{name}/cloud.qcow2").json()["errors"]["url"]
        for name in ("intranet.test", "nonexistent.test")
    ]
    assert answers[0] == [m.replace("nonexistent", "intranet") for m in answers[1]]
    # The guard answered 'no such name' itself; nothing was looked up for real.
    assert network.outside_lookups == ["nonexistent.test"]
    network.outside_lookups.clear()
