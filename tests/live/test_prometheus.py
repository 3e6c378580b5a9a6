"""GET /metrics: Prometheus text format, the right figures for a small world, refused to
callers without the token or from outside the allowed networks, constant query count."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from cloudpanel.jobs.models import Job
from cloudpanel.live import metrics
from cloudpanel.projects.models import Project
from hosts.models import Host
from instances.models import Flavor, Instance

pytestmark = [pytest.mark.django_db]

GIB = 1024**3
TOKEN = "prom-t0ken-4f2a9c"


@pytest.fixture(autouse=True)
def _clean_metrics():
    client = metrics.client()
    for key in client.scan_iter("cloudpanel:metrics:*"):
        client.delete(key)
    yield
    for key in client.scan_iter("cloudpanel:metrics:*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def _open(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    settings.WATCHER_STATS_INTERVAL = 5.0


def sample(t: float, cpu: float) -> dict:
    return {
        "t": t, "cpu_percent": cpu, "memory_used_bytes": 300 << 20,
        "memory_total_bytes": 512 << 20, "disk_read_bps": 10.0, "disk_write_bps": 20.0,
        "net_rx_bps": 30.0, "net_tx_bps": 40.0,
    }  # fmt: skip


def _host(name: str, status: str, cpus: int = 8) -> Host:
    return Host.objects.create(
        name=name,
        uri=f"qemu+tcp://127.0.0.1:{21000 + cpus}/system",
        transport="tcp",
        status=status,
        capabilities={"cpus": cpus, "memory_bytes": 16 * GIB},
        storage_pools=[{"name": "default", "active": True, "capacity_bytes": 100 * GIB}],
        cpu_allocation_ratio=4,
        ram_allocation_ratio=1.5,
        disk_allocation_ratio=1,
    )


@pytest.fixture
def world():
    proj = Project.objects.create(name="proj-a")
    hv1 = _host("hv1", "online", cpus=8)
    hv2 = _host("hv2", "offline", cpus=4)
    flavor = Flavor.objects.create(name="small", vcpus=2, ram_mib=512, disk_gib=10)

    def vm(name, host, state):
        return Instance.objects.create(
            name=name, project=proj, flavor=flavor, host=host, state=state
        )

    w = {
        "proj": proj, "hv1": hv1, "hv2": hv2,
        "web": vm("web", hv1, "running"), "db": vm("db", hv1, "running"),
        "old": vm("old", hv1, "shutoff"), "broken": vm("broken", hv2, "error"),
    }  # fmt: skip
    for kind, status in [("instance.create", "succeeded")] * 3 + [
        ("instance.create", "failed"),
        ("instance.delete", "running"),
    ]:
        Job.objects.create(kind=kind, target_type="instance", status=status, project=proj)
    now = time.time()
    metrics.record_many(
        metrics.INSTANCE,
        {
            w["web"].pk: sample(now - 1, 12.5),
            w["db"].pk: sample(now - 2, 80.0),
            w["old"].pk: sample(now - 3600, 99.0),  # stopped an hour ago: stale, left out
        },
    )
    metrics.record_many(metrics.HOST, {hv1.pk: {**sample(now - 1, 46.25), "instances": 2}})
    return w


def scrape(client: Client | None = None, **extra):
    response = (client or Client()).get("/metrics", REMOTE_ADDR="127.0.0.1", **extra)
    return response


def families(response) -> dict:
    assert response.status_code == 200, response.content
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def values(family) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def test_output_parses_with_the_right_families_and_values(world):
    response = scrape()
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    got = families(response)

    hosts = values(got["cloudpanel_hosts"])
    assert hosts[(("status", "online"),)] == 1
    assert hosts[(("status", "offline"),)] == 1
    assert hosts[(("status", "error"),)] == 0

    assert values(got["cloudpanel_host_up"]) == {(("host", "hv1"),): 1, (("host", "hv2"),): 0}
    capacity = values(got["cloudpanel_host_capacity"])
    assert capacity[(("host", "hv1"), ("resource", "vcpus"))] == 32  # 8 cores x 4
    assert capacity[(("host", "hv1"), ("resource", "ram_bytes"))] == 24 * GIB  # 16 GiB x 1.5
    assert capacity[(("host", "hv2"), ("resource", "disk_bytes"))] == 100 * GIB
    allocated = values(got["cloudpanel_host_allocated"])
    assert allocated[(("host", "hv1"), ("resource", "vcpus"))] == 6  # 3 instances x 2
    assert allocated[(("host", "hv2"), ("resource", "vcpus"))] == 0  # error holds nothing
    assert values(got["cloudpanel_host_physical"])[(("host", "hv2"), ("resource", "vcpus"))] == 4
    assert values(got["cloudpanel_host_instances"]) == {
        (("host", "hv1"),): 3,
        (("host", "hv2"),): 0,
    }

    states = values(got["cloudpanel_instances"])
    assert states[(("state", "running"),)] == 2
    assert states[(("state", "shutoff"),)] == 1
    assert states[(("state", "error"),)] == 1
    assert states[(("state", "building"),)] == 0
    assert set(states) == {(("state", s),) for s in Instance.State.values}

    assert values(got["cloudpanel_jobs"]) == {
        (("kind", "instance.create"), ("status", "failed")): 1,
        (("kind", "instance.create"), ("status", "succeeded")): 3,
        (("kind", "instance.delete"), ("status", "running")): 1,
    }

    def key(instance):
        return (("host", "hv1"), ("name", instance.name), ("project", "proj-a"),
                ("uuid", str(instance.uuid)))  # fmt: skip

    cpu = values(got["cloudpanel_instance_cpu_percent"])
    assert cpu == {key(world["web"]): 12.5, key(world["db"]): 80.0}  # "old" is stale
    assert values(got["cloudpanel_instance_memory_used_bytes"])[key(world["web"])] == 300 << 20
    assert values(got["cloudpanel_instance_network_transmit_bytes_per_second"]) == {
        key(world["web"]): 40.0,
        key(world["db"]): 40.0,
    }
    assert values(got["cloudpanel_host_cpu_percent"]) == {(("host", "hv1"),): 46.25}
    assert values(got["cloudpanel_host_running_instances"]) == {(("host", "hv1"),): 2}
    # Samples carry the time they were taken.
    (web_sample,) = [
        s for s in got["cloudpanel_instance_cpu_percent"].samples if s.labels["name"] == "web"
    ]
    assert web_sample.timestamp is not None and abs(web_sample.timestamp - time.time()) < 600


def test_the_token_is_required_once_set(world, settings):
    settings.METRICS_TOKEN = TOKEN
    missing = scrape()
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 401
    assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}").status_code == 401
    assert scrape(HTTP_AUTHORIZATION=f"Token {TOKEN}").status_code == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer ").status_code == 401
    # With a token the network allow-list no longer lets anyone in.
    assert scrape(HTTP_AUTHORIZATION="").status_code == 401
    ok = Client().get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert "cloudpanel_instances" in families(ok)


def test_without_a_token_only_allowed_networks(world, settings):
    assert scrape().status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    foreign = Client().get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert foreign.status_code == 403
    assert b"cloudpanel_" not in foreign.content
    # A forwarded-for header is anyone's to write: never read.
    spoofed = Client().get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert spoofed.status_code == 403
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "not-a-network"]
    assert scrape().status_code == 403
    assert Client().get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    settings.METRICS_ALLOWED_NETWORKS = []
    assert scrape().status_code == 403


def test_only_reads(world):
    assert Client().post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405


def test_query_count_does_not_grow_with_instances(world):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            families(scrape())
        return len(queries)

    before = count()
    flavor = Flavor.objects.get(name="small")
    more = [
        Instance.objects.create(
            name=f"extra-{i}", project=world["proj"], flavor=flavor, host=world["hv2"],
            state="running",
        )
        for i in range(15)
    ]  # fmt: skip
    Job.objects.create(kind="instance.start", target_type="instance", status="pending")
    metrics.record_many(metrics.INSTANCE, {i.pk: sample(time.time(), 1.0) for i in more})
    after = count()
    assert after == before
    got = families(scrape())
    assert len(got["cloudpanel_instance_cpu_percent"].samples) == 2 + 15
