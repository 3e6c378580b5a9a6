"""Hosts as live events on the status stream: admins only (tenants never see hosts)."""

from __future__ import annotations

from cloudpanel.live.publisher import ADMIN_GROUP, publish

from .models import Host


def host_to_event(host: Host) -> dict:
    return {
        "id": host.pk,
        "name": host.name,
        "status": host.status,
        "status_display": host.get_status_display(),
        "last_error": host.last_error,
        "last_seen_at": host.last_seen_at.isoformat() if host.last_seen_at else None,
    }


def broadcast_host(host: Host) -> None:
    publish([ADMIN_GROUP], {"type": "status.host", "host": host_to_event(host)})


def on_host_changed(sender, host: Host, **kwargs) -> None:
    broadcast_host(host)
