"""End to end: a host URI never makes the panel run a program.

The program is a script that only writes a marker file. Every URI here points at 127.0.0.1.
"""

import pytest

from cloudpanel import virt
from hosts.models import Host
from hosts.services import host_check_health, host_create


@pytest.fixture
def evil(tmp_path):
    """A program a hostile URI would have libvirt run, and the file it would leave."""
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    script.chmod(0o755)
    return script, marker


def hostile(script) -> list[str]:
    base = "qemu+ssh://root@127.0.0.1:1/system"
    return [
        f"{base}?no_verify=1;command={script}",
        f"{base}?no_verify=1;netcat={script}",
        f"{base}?mode=auto&no_verify=1;command={script}",
        f"{base}?%63ommand={script}",
        f"{base}?COMMAND={script}",
        f"qemu+ext:///system?command={script}",
    ]


def test_the_hostile_uri_really_runs_a_program_when_opened_raw(evil):
    # The control experiment: handed to libvirt as written, the URI runs the script. This
    # is what the validator stands between.
    script, marker = evil
    with pytest.raises(virt.VirtError):
        virt.ping(f"qemu+ssh://root@127.0.0.1:1/system?no_verify=1;command={script}")
    assert marker.exists()


def test_the_api_refuses_them_and_nothing_runs(api_client, evil):
    script, marker = evil
    for uri in hostile(script):
        response = api_client.post("/api/v1/hosts/", {"name": "evil", "uri": uri}, format="json")
        assert response.status_code == 400, uri
        assert response.json()["errors"]["uri"], uri  # a field error, with a message
    assert not Host.objects.exists()
    assert not marker.exists()


def test_an_equivalent_spelling_is_stored_rebuilt(api_client):
    response = api_client.post(
        "/api/v1/hosts/",
        {"name": "t", "uri": "qemu+tcp://LOCALHOST:0/sys%74em"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["uri"] == "qemu+tcp://localhost/system"
    assert Host.objects.get(name="t").uri == "qemu+tcp://localhost/system"


def test_an_old_row_with_a_hostile_uri_is_never_opened(db, evil):
    # A row saved before these rules (or written behind the model's back) gets no pass:
    # the health check refuses to connect and says why.
    script, marker = evil
    host = host_create(name="old", uri="test:///default")
    Host.objects.filter(pk=host.pk).update(uri=hostile(script)[0])
    host.refresh_from_db()
    host_check_health(host=host)
    host.refresh_from_db()
    assert host.status == Host.Status.ERROR
    assert "not accepted any more" in host.last_error and "command" in host.last_error
    assert not marker.exists()
