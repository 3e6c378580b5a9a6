"""First-run setup that `make run` repeats safely: admin user, default project, local host,
the key files of SSH hosts."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from cloudpanel import virt
from cloudpanel.projects.services import project_get_default
from hosts import keys
from hosts.models import Host
from hosts.services import host_create, host_sync
from instances.models import Flavor

LOCAL_URI = "qemu:///system"
DEMO_URI = "test:///default"
STARTER_FLAVORS = [("tiny", 1, 64, 1), ("small", 1, 512, 5), ("medium", 2, 2048, 20)]


class Command(BaseCommand):
    help = "Create the admin user, the default project and register the local hypervisor."

    def handle(self, *args, **options):
        self._admin()
        project_get_default()
        for name, vcpus, ram, disk in STARTER_FLAVORS:
            Flavor.objects.get_or_create(
                name=name, defaults={"vcpus": vcpus, "ram_mib": ram, "disk_gib": disk}
            )
        self._local_host()
        # Key files live on this machine, the keys in the database: after a move or a
        # restore, write the missing ones once (reading a host's URI never writes them).
        restored = keys.restore_missing(Host.objects.exclude(ssh_private_key_encrypted=""))
        if restored:
            self.stdout.write(f"Wrote the SSH key files of {len(restored)} host(s) again.")

    def _admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(username="admin").exists():
            return
        password = os.environ.get("CLOUDPANEL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", email="", password=password)
        if os.environ.get("CLOUDPANEL_ADMIN_PASSWORD"):
            self.stdout.write("Created user 'admin' with the password from the environment.")
        else:
            # Printed once: it is not stored anywhere in clear.
            self.stdout.write(self.style.WARNING(f"Created user 'admin' with password: {password}"))

    def _local_host(self) -> None:
        existing = Host.objects.filter(uri__in=[LOCAL_URI, DEMO_URI]).first()
        if existing:
            host_sync(host=existing)
            self.stdout.write(f"Host {existing.name} ({existing.uri}): {existing.status}")
            return
        try:
            virt.ping(LOCAL_URI)
            name, uri = "local", LOCAL_URI
        except virt.VirtError as exc:
            self.stdout.write(
                self.style.WARNING(f"No local libvirtd ({exc}); registering the demo test driver.")
            )
            name, uri = "demo", DEMO_URI
        host = host_create(name=name, uri=uri)
        kind = "KVM" if host.kvm else "TCG (software emulation)"
        self.stdout.write(f"Registered host {host.name} ({uri}): {host.status}, {kind}")
