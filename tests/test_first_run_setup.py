"""`make run`'s first-run setup (the cloudpanel_setup command), on a fresh database each.

It creates the user admin once, the default project and the starter flavors, and registers
the local hypervisor qemu:///system, or libvirt's test:///default driver as a demo host when
no local libvirtd answers. Running it again changes nothing that exists.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from cloudpanel import virt
from cloudpanel.projects.models import Project
from hosts.models import Host
from instances.models import Flavor

from .conftest import IN_CI, _database_url_for_subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_URI = "qemu:///system"
DEMO_URI = "test:///default"
STARTER_FLAVORS = {"tiny": (1, 64, 1), "small": (1, 512, 5), "medium": (2, 2048, 20)}


def _setup(**env) -> str:
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CLOUDPANEL_ADMIN_PASSWORD", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        call_command("cloudpanel_setup", stdout=out, stderr=out)
    return out.getvalue()


@pytest.fixture
def local_libvirt():
    """qemu:///system must answer (make test starts libvirtd: scripts/start-services.sh)."""
    try:
        virt.ping(LOCAL_URI)
    except virt.VirtError as exc:
        if IN_CI:
            pytest.fail(f"no libvirtd answers at {LOCAL_URI} in CI: {exc}")
        pytest.skip(f"no libvirtd answers at {LOCAL_URI}: {exc}")


@pytest.mark.django_db
def test_first_run_creates_admin_flavors_and_the_local_host_and_a_rerun_keeps_them(
    local_libvirt,
):
    output = _setup(CLOUDPANEL_ADMIN_PASSWORD="first-pw-123")
    assert "Created user 'admin'" in output
    assert "first-pw-123" not in output  # a password from the environment is not echoed
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password("first-pw-123")
    assert Project.objects.count() == 1
    flavors = {f.name: (f.vcpus, f.ram_mib, f.disk_gib) for f in Flavor.objects.all()}
    assert flavors == STARTER_FLAVORS
    host = Host.objects.get()
    assert (host.name, host.uri, host.status) == ("local", LOCAL_URI, "online"), host.last_error
    assert "Registered host local" in output
    assert host.capabilities and host.synced_at  # read from the real daemon

    # Again, with another password in the environment: nothing is created or reset, and the
    # host is synced, never registered twice (nor a demo host beside it).
    output = _setup(CLOUDPANEL_ADMIN_PASSWORD="second-pw-456")
    assert "Created user" not in output
    assert get_user_model().objects.filter(username="admin").count() == 1
    admin.refresh_from_db()
    assert admin.check_password("first-pw-123") and not admin.check_password("second-pw-456")
    assert Project.objects.count() == 1
    assert Flavor.objects.count() == len(STARTER_FLAVORS)
    assert list(Host.objects.values_list("uri", flat=True)) == [LOCAL_URI]
    assert "Host local (qemu:///system): online" in output


def _without_local_libvirt() -> list[str]:
    """A command prefix that runs a program where qemu:///system has no socket: a mount
    namespace with an empty /run/libvirt (/var/run is /run), as on a machine without
    libvirtd."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is needed to hide the local libvirt")
    user_namespace = [] if os.geteuid() == 0 else ["--map-root-user"]
    return [unshare, *user_namespace, "--mount", "--propagation", "private", "sh", "-ec",
            'mount -t tmpfs cloudpanel-no-libvirt /run/libvirt && exec "$@"', "sh"]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_the_demo_test_driver_is_registered_when_no_local_libvirtd_answers(settings):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url_for_subprocess(),
        "REDIS_URL": settings.REDIS_URL,
    }
    env.pop("CLOUDPANEL_ADMIN_PASSWORD", None)  # so one is generated and printed
    command = [*_without_local_libvirt(), sys.executable, "manage.py", "cloudpanel_setup"]
    outputs = []
    for _ in range(2):  # and again: still the one demo host
        run = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stdout + run.stderr
        outputs.append(run.stdout)
    assert "No local libvirtd" in outputs[0] and "Registered host demo" in outputs[0], outputs
    assert "Host demo (test:///default): online" in outputs[1], outputs
    host = Host.objects.get()
    assert (host.name, host.uri, host.status) == ("demo", DEMO_URI, "online"), host.last_error
    assert not host.kvm  # the test driver emulates

    # The generated password is printed once, on the run that created the admin.
    line = next(line for line in outputs[0].splitlines() if "Created user 'admin'" in line)
    password = line.rsplit("password: ", 1)[1].strip()
    assert len(password) >= 12 and password not in outputs[1]
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert set(Flavor.objects.values_list("name", flat=True)) == set(STARTER_FLAVORS)
