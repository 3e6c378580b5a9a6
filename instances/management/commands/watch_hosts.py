"""`python manage.py watch_hosts`: the host watcher (instances.watcher), until SIGTERM/SIGINT."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Watch every online host's libvirt events and metrics (see instances.watcher)."

    def handle(self, *args, **options) -> None:
        from instances.watcher import Watcher

        watcher = Watcher()

        def stop(_signum, _frame) -> None:
            watcher.stop()  # run() returns after releasing its leases

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        watcher.run()
