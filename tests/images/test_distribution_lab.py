"""Image distribution on the real lab: policy 'all' copies the image to the online host, and
a host registered later gets its copy from the periodic task; the copies are real volumes
with the image's bytes."""

from __future__ import annotations

import hashlib

import pytest

from cloudpanel.jobs.models import Job
from cloudpanel.jobs.services import job_execute
from hosts.services import host_create
from images.models import Image, ImageReplica
from images.operations import DISTRIBUTE
from images.store import image_path
from images.tasks import distribute_all
from tests.instances.conftest import make_image, pool_volumes

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _in_memory_channels(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_policy_all_reaches_every_online_host_also_one_that_joins_later(
    lab, admin_user, default_project, settings
):
    lab0 = host_create(name="lab0", uri=lab.hosts[0].uri_tcp)
    image = make_image(default_project, settings, name="spread", fmt="qcow2", size_mib=16)
    image.distribution = Image.Distribution.ALL
    image.save()

    job = DISTRIBUTE.start(user=admin_user, target=image)
    job_execute(job.id)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.log)
    assert [(r["host_name"], r["action"]) for r in job.result["hosts"]] == [("lab0", "copied")]
    replica = ImageReplica.objects.get(image=image, host=lab0)
    assert replica.status == ImageReplica.Status.ACTIVE
    assert replica.volume in pool_volumes(lab0)
    expected = sha256(image_path(image.file))
    assert sha256(lab.hosts[0].pool_dir / replica.volume) == expected

    lab1 = host_create(name="lab1", uri=lab.hosts[1].uri_unix)  # joins later
    started = distribute_all()
    assert len(started) == 1
    job_execute(started[0])
    job = Job.objects.get(pk=started[0])
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.log)
    assert {r["host_name"]: r["action"] for r in job.result["hosts"]} == {
        "lab0": "present",
        "lab1": "copied",
    }
    replica = ImageReplica.objects.get(image=image, host=lab1)
    assert sha256(lab.hosts[1].pool_dir / replica.volume) == expected
    assert distribute_all() == []  # every host has it now
