"""Every non-job service writes one event: who, target, cleaned parameters, outcome."""

from __future__ import annotations

import subprocess

import pytest
from django.test import Client

from cloudpanel import errors

from .conftest import client_for, events, make_instance

pytestmark = pytest.mark.django_db

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def only(action):
    found = events(action=action)
    assert len(found) == 1, [(e.action, e.result) for e in events()]
    return found[0]


def test_host_create_update_sync_maintenance_delete(admin):
    from hosts import services

    host = services.host_create(name="h1", uri="test:///default", ssh_private_key=PEM)
    created = only("host.create")
    assert (created.target_type, created.target_id, created.target_name) == (
        "host",
        str(host.pk),
        "h1",
    )
    assert created.params["ssh_private_key"] == "[redacted]"
    assert "PRIVATE KEY" not in repr(created.params)
    assert not events(action="host.sync")  # part of the create, not an action of its own
    services.host_update(host=host, console_address="127.0.0.1")
    assert only("host.update").params == {"console_address": "127.0.0.1"}
    services.host_sync(host=host)
    assert only("host.sync").result == "ok"
    services.host_set_maintenance(host=host, maintenance=True)
    assert only("host.maintenance").params == {"maintenance": True}
    pk = host.pk
    services.host_delete(host=host)
    deleted = only("host.delete")
    assert (deleted.target_id, deleted.target_name, deleted.result) == (str(pk), "h1", "ok")
    assert all(e.source == "system" and e.user is None for e in events())


def test_a_refused_service_is_audited_with_its_message(blue, flavor, host, admin):
    from hosts import services

    make_instance(blue, flavor, host)
    with pytest.raises(errors.Conflict) as refused:
        services.host_delete(host=host)
    event = only("host.delete")
    assert event.result == "failed" and event.message == str(refused.value)


def test_flavors(admin):
    from instances import services

    flavor = services.flavor_create(name="f1", vcpus=1, ram_mib=64, disk_gib=1)
    assert only("flavor.create").target_name == "f1"
    services.flavor_update(flavor=flavor, ram_mib=128)
    assert only("flavor.update").params == {"ram_mib": 128}
    services.flavor_delete(flavor=flavor)
    assert only("flavor.delete").target_name == "f1"


def test_rename_forget_adopt(blue, blue_member, red_member, admin, flavor, host):
    from hosts.models import Host
    from instances import services

    instance = make_instance(blue, flavor, host, name="old")
    services.instance_rename(user=blue_member, instance=instance, name="new")
    event = only("instance.rename")
    assert (event.user, event.project, event.params) == (blue_member, blue, {"name": "new"})
    with pytest.raises(errors.PermissionDenied):
        services.instance_rename(user=red_member, instance=instance, name="mine")
    denied = events(action="instance.rename", result="denied")
    assert len(denied) == 1 and denied[0].user == red_member and denied[0].project == blue

    Host.objects.filter(pk=host.pk).update(status=Host.Status.OFFLINE)
    host.refresh_from_db()
    services.instance_forget(user=admin, instance=instance)
    forgot = only("instance.forget")
    assert (forgot.target_name, forgot.project, forgot.user) == ("new", blue, admin)

    Host.objects.filter(pk=host.pk).update(status=Host.Status.ONLINE)
    host.refresh_from_db()
    adopted = services.instance_adopt(user=admin, host=host, domain_name="test", project=blue)
    event = only("instance.adopt")
    assert (event.target_id, event.project, event.result) == (str(adopted.pk), blue, "ok")
    assert event.params["host"] == host.pk and event.params["domain_name"] == "test"


def test_keypairs(blue_member, tmp_path):
    from instances import keypairs

    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pair = keypairs.keypair_create(
        user=blue_member, name="laptop", public_key=(tmp_path / "k.pub").read_text()
    )
    event = only("keypair.create")
    assert (event.user, event.target_name, event.project) == (blue_member, "laptop", None)
    pk = pair.pk
    keypairs.keypair_delete(user=blue_member, keypair=pair)
    assert only("keypair.delete").target_id == str(pk)


def test_image_upload_update_delete_through_the_api(blue, blue_member, settings):
    qcow2 = settings.IMAGE_STORE / "up.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "16M"], check=True)
    api = client_for(blue_member)
    with qcow2.open("rb") as fh:
        response = api.post(
            "/api/v1/images/", {"name": "up", "disk_format": "qcow2", "file": fh},
            format="multipart", REMOTE_ADDR="10.9.8.7",
        )  # fmt: skip
    assert response.status_code == 201, response.content
    image_id = response.json()["id"]
    event = only("image.upload")
    assert (event.target_id, event.project, event.user) == (str(image_id), blue, blue_member)
    assert (event.source, event.client_address) == ("api", "10.9.8.7")
    assert event.params["fileobj"]["size"] == qcow2.stat().st_size
    assert (
        api.patch(f"/api/v1/images/{image_id}/", {"min_ram_mib": 64}, format="json").status_code
        == 200
    )
    assert only("image.update").params == {"min_ram_mib": 64}
    assert api.delete(f"/api/v1/images/{image_id}/").status_code == 204
    assert only("image.delete").target_name == "up"


def test_console_ticket_names_who_opened_which_console(blue, blue_member, flavor, host):
    from instances.consoles import console_ticket_issue

    instance = make_instance(blue, flavor, host, name="vm", domain="test")
    ticket = console_ticket_issue(user=blue_member, instance=instance)
    event = only("instance.console")
    assert (event.user, event.target_name, event.project) == (blue_member, "vm", blue)
    assert ticket["ticket"] not in repr(event.params) + event.message


def test_reconcile_and_host_down_are_the_systems(blue, flavor, host):
    from instances.hostdown import mark_host_down
    from instances.reconcile import ReconcileReport, reconcile_host

    gone = make_instance(blue, flavor, host, name="gone", domain="cp-not-there")
    reconcile_host(host, ReconcileReport())
    event = only("instance.missing")
    assert (event.user, event.source, event.target_id, event.project) == (
        None,
        "system",
        str(gone.pk),
        blue,
    )
    assert host.name not in event.message  # tenants read it

    alive = make_instance(blue, flavor, host, name="alive", domain="test")
    host.status = "offline"
    marked = mark_host_down(host=host, since=None)
    assert sorted(marked) == sorted([gone.pk, alive.pk])
    assert sorted(e.target_id for e in events(action="instance.host_down")) == sorted(
        str(pk) for pk in marked
    )
    down = only("host.down")
    assert (down.target_id, down.project, sorted(down.params["instances"])) == (
        str(host.pk),
        None,
        sorted(marked),
    )


def test_sign_in_failure_sign_out_and_lockout(admin, settings):
    browser = Client(REMOTE_ADDR="192.0.2.10")
    browser.post("/login/", {"username": "boss", "password": "wrong-password"})
    failed = only("auth.login_failed")
    assert (failed.result, failed.target_name, failed.client_address) == (
        "denied",
        "boss",
        "192.0.2.10",
    )
    assert "wrong-password" not in repr(failed.params) + failed.message
    browser.post("/login/", {"username": "boss", "password": "pw-boss-123"})
    login = only("auth.login")
    assert (login.user, login.source, login.client_address) == (admin, "ui", "192.0.2.10")
    browser.post("/logout/")
    assert only("auth.logout").user == admin
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        browser.post("/login/", {"username": "boss", "password": "nope"})
    assert events(action="auth.locked_out"), [e.action for e in events()]


def test_job_end_and_cancel_are_audited(blue, blue_member, flavor, host):
    from cloudpanel.jobs import registry
    from cloudpanel.jobs.models import Job
    from cloudpanel.jobs.services import job_cancel, job_execute

    instance = make_instance(blue, flavor, host, name="vm", domain="test")
    job = registry.get("instance.suspend").start(user=blue_member, target=instance)
    job_execute(job.id)
    job.refresh_from_db()
    ended = [e for e in events(job=job) if e.result != "accepted"]
    assert len(ended) == 1
    assert ended[0].result == ("ok" if job.status == Job.Status.SUCCEEDED else "failed")
    assert (ended[0].user, ended[0].project, ended[0].params["status"]) == (
        blue_member,
        blue,
        job.status,
    )

    instance.refresh_from_db()
    job = registry.get("instance.resume").start(user=blue_member, target=instance)
    job_cancel(job=job)
    assert [e.action for e in events(job=job)] == [
        "instance.resume",
        "job.cancel",
        "instance.resume",
    ]
    assert events(job=job)[-1].params["status"] == "cancelled"


def test_secrets_are_cut_from_any_params():
    from cloudpanel.audit.services import audit_record

    event = audit_record(
        action="test.secret",
        params={
            "password": "p4ss", "api_token": "cp_abc", "nested": {"client_secret": "zzz"},
            "note": PEM, "user_data": b"#cloud-config\nchpasswd: {list: 'root:x'}",
            "long": "y" * 10_000, "many": list(range(500)),
        },
    )  # fmt: skip
    text = repr(event.params)
    for secret in ("p4ss", "cp_abc", "zzz", "PRIVATE KEY", "chpasswd"):
        assert secret not in text
    assert len(event.params["long"]) < 400
    assert len(event.params["many"]) <= 51
    assert set(event.params["user_data"]) == {"size", "sha256"}


def test_a_failing_record_never_raises():
    from cloudpanel.audit.services import audit_record

    class Unprintable:
        def __str__(self):
            raise RuntimeError("boom")

    assert audit_record(action="test.broken", params={"x": Unprintable()}) is None


def test_an_event_costs_one_insert(admin, blue, flavor, host):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cloudpanel.audit.services import audit_record

    instance = make_instance(blue, flavor, host)
    with CaptureQueriesContext(connection) as queries:
        audit_record(action="x.y", user=admin, target=instance, params={"a": 1})
    verbs = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    # The test runs inside a transaction: the savepoint keeps a failed insert from breaking it.
    assert [v for v in verbs if v not in ("SAVEPOINT", "RELEASE")] == ["INSERT"], verbs
