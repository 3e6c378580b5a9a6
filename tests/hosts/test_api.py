"""Hosts over the REST API, on libvirt's test driver and on unreachable URIs."""

import socket
import threading

import pytest

from cloudpanel import virt
from hosts.models import Host, HostEvent

pytestmark = pytest.mark.django_db

SECRET_KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n"


def test_create_host_on_test_driver_reads_capabilities(api_client):
    response = api_client.post(
        "/api/v1/hosts/", {"name": "demo", "uri": "test:///default"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "online"
    caps = body["capabilities"]
    for key in ("arch", "cpu_model", "cpus", "memory_bytes", "hypervisor",
                "hypervisor_version", "kvm", "hw_virt", "ksm"):
        assert key in caps
    assert caps["hypervisor"] == "TEST"
    assert caps["cpus"] > 0 and caps["memory_bytes"] > 0
    assert caps["kvm"] is False
    assert body["transport"] == "test"
    assert float(body["cpu_allocation_ratio"]) == 4.0
    assert float(body["ram_allocation_ratio"]) == 1.0
    cap = body["capacity"]
    assert cap["vcpus"]["limit"] == caps["cpus"] * 4.0
    assert cap["vcpus"]["allocated"] == 0
    assert cap["ram_bytes"]["physical"] == caps["memory_bytes"]
    assert body["storage_pools"] and body["networks"]


def test_malformed_uri_gets_field_error_and_creates_nothing(api_client):
    response = api_client.post("/api/v1/hosts/", {"name": "x", "uri": "xen:///"}, format="json")
    assert response.status_code == 400
    assert "uri" in response.json()["errors"]
    assert not Host.objects.exists()


def test_bad_name_and_ratio_are_rejected(api_client):
    response = api_client.post(
        "/api/v1/hosts/",
        {"name": "<bad>", "uri": "test:///default", "cpu_allocation_ratio": "0"},
        format="json",
    )
    assert response.status_code == 400
    assert {"name", "cpu_allocation_ratio"} <= set(response.json()["errors"])


def test_refused_host_is_saved_with_error_and_advice(api_client):
    # Nothing listens on port 1 of loopback: the connection is refused at once.
    response = api_client.post(
        "/api/v1/hosts/",
        {"name": "gone", "uri": "qemu+tcp://127.0.0.1:1/system"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "error"
    assert "Connection refused" in body["last_error"]
    assert "libvirtd" in body["last_error"]  # advice a person can act on
    assert "Traceback" not in body["last_error"]


@pytest.fixture
def silent_server():
    """A TCP server that accepts and never answers: libvirt would wait forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_silent_host_times_out_within_the_connect_timeout(api_client, silent_server):
    pool = virt.get_pool()
    old = pool.connect_timeout
    pool.connect_timeout = 1.0  # read on every open
    try:
        response = api_client.post(
            "/api/v1/hosts/",
            {"name": "silent", "uri": f"qemu+tcp://127.0.0.1:{silent_server}/system"},
            format="json",
        )
    finally:
        pool.connect_timeout = old
    assert response.status_code == 201
    assert response.json()["status"] == "error"
    # Our timeout ended the wait (libvirt's own would last minutes), with advice attached.
    assert "Timed out after 1 s" in response.json()["last_error"]
    assert "firewall" in response.json()["last_error"]


def test_ssh_key_is_encrypted_and_never_returned(api_client):
    response = api_client.post(
        "/api/v1/hosts/",
        {
            "name": "remote",
            "uri": "qemu+ssh://root@127.0.0.1:1/system",
            "ssh_private_key": SECRET_KEY_TEXT,
        },
        format="json",
    )
    assert response.status_code == 201
    assert "c2VjcmV0" not in response.content.decode()
    assert response.json()["has_ssh_key"] is True
    host = Host.objects.get(name="remote")
    assert "c2VjcmV0" not in host.ssh_private_key_encrypted
    for url in ("/api/v1/hosts/", f"/api/v1/hosts/{host.id}/", "/api/schema/"):
        assert "c2VjcmV0" not in api_client.get(url).content.decode()


def test_refresh_endpoint_syncs(api_client, test_host):
    response = api_client.post(f"/api/v1/hosts/{test_host.id}/refresh/")
    assert response.status_code == 200
    assert response.json()["status"] == "online"


def test_delete_host_with_instances_is_refused(api_client, test_host, default_project):
    from instances.models import Flavor, Instance

    flavor = Flavor.objects.create(name="t", vcpus=2, ram_mib=128, disk_gib=1)
    Instance.objects.create(
        name="vm1", project=default_project, flavor=flavor, host=test_host, state="running"
    )
    response = api_client.delete(f"/api/v1/hosts/{test_host.id}/")
    assert response.status_code == 409
    assert "instance" in response.json()["detail"]
    # Capacity now counts the instance.
    cap = api_client.get(f"/api/v1/hosts/{test_host.id}/").json()["capacity"]
    assert cap["vcpus"]["allocated"] == 2
    assert cap["ram_bytes"]["allocated"] == 128 * 1024 * 1024
    Instance.objects.all().delete()
    assert api_client.delete(f"/api/v1/hosts/{test_host.id}/").status_code == 204


def test_hosts_are_admin_only(client, member_user, test_host):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(member_user)
    assert api.get("/api/v1/hosts/").status_code == 403
    assert APIClient().get("/api/v1/hosts/").status_code in (401, 403)


def test_token_auth(anon_client, admin_user):
    response = anon_client.post(
        "/api/v1/auth/token/", {"username": "root-admin", "password": "pw-admin-123"},
        format="json",
    )
    assert response.status_code == 200
    token = response.json()["token"]
    anon_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anon_client.get("/api/v1/hosts/").status_code == 200
    bad = anon_client.post(
        "/api/v1/auth/token/", {"username": "root-admin", "password": "nope"}, format="json"
    )
    assert bad.status_code == 400


def test_health_check_records_transitions(test_host):
    from hosts.services import host_check_health

    test_host.uri = "qemu+tcp://127.0.0.1:1/system"
    test_host.save()
    host_check_health(host=test_host)
    assert test_host.status == Host.Status.OFFLINE  # was seen before: offline, not error
    test_host.uri = "test:///default"
    test_host.save()
    host_check_health(host=test_host)
    assert test_host.status == Host.Status.ONLINE
    transitions = list(
        HostEvent.objects.filter(host=test_host).order_by("id").values_list(
            "from_status", "to_status"
        )
    )
    assert transitions[-2:] == [("online", "offline"), ("offline", "online")]


def test_changing_a_uri_resyncs_and_closes_only_the_old_connection(api_client, test_host):
    pool = virt.get_pool()
    pool.get("test:///default")
    pool.get("test:///default?other")  # another host's connection, kept open
    response = api_client.patch(
        f"/api/v1/hosts/{test_host.id}/", {"uri": "qemu+tcp://127.0.0.1:1/system"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "offline" and response.json()["transport"] == "tcp"
    assert "test:///default" not in pool._conns
    assert "test:///default?other" in pool._conns
    pool.close("test:///default?other")
