"""Host rules: register, update, sync from libvirt, health, delete."""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from cloudpanel import crypto, virt
from cloudpanel.audit.decorators import audited
from cloudpanel.errors import Conflict

from . import keys
from .connection import connection_uri, pooled_uri
from .models import Host, HostEvent
from .signals import host_changed
from .uris import default_console_address

log = logging.getLogger(__name__)

# Turn libvirt's low-level failures into advice a person can act on.
_HINTS = [
    (
        re.compile(r"Connection refused", re.I),
        "Nothing is listening there: is libvirtd running with --listen (TCP) or its socket "
        "enabled, and is the port right?",
    ),
    (
        re.compile(r"No such file or directory", re.I),
        "The libvirt socket does not exist: is libvirtd running on that machine?",
    ),
    (
        re.compile(r"Permission denied \(publickey", re.I),
        "SSH refused the key: add the panel's public key to the user's authorized_keys.",
    ),
    (
        re.compile(r"Host key verification failed", re.I),
        "SSH does not know this host's key yet: add it to known_hosts of the panel's user.",
    ),
    (
        re.compile(r"Name or service not known|Could not resolve", re.I),
        "The host name does not resolve: check the URI's host part.",
    ),
    (
        re.compile(r"Timed out", re.I),
        "The host did not answer in time: check that it is up and that no firewall drops "
        "the connection.",
    ),
    (
        re.compile(r"authentication (failed|unavailable)|access denied", re.I),
        "libvirt refused the login: check the credentials or the daemon's auth settings.",
    ),
]


def explain(error: Exception) -> str:
    message = str(error)
    for pattern, hint in _HINTS:
        if pattern.search(message):
            return f"{message}. {hint}"
    return message


def _set_status(host: Host, status: str, message: str = "") -> None:
    if host.status != status:
        HostEvent.objects.create(
            host=host, from_status=host.status, to_status=status, message=message[:2000]
        )
        # The caller saves the row; pages hear of the transition once that is committed.
        transaction.on_commit(lambda: host_changed.send(sender=Host, host=host))
    host.status = status
    host.last_error = message


@audited("host.create")
@transaction.atomic
def host_create(
    *,
    name: str,
    uri: str,
    ssh_private_key: str = "",
    console_address: str = "",
    default_pool: str = "default",
    default_network: str = "default",
    cpu_allocation_ratio: Decimal | float | None = None,
    ram_allocation_ratio: Decimal | float | None = None,
    disk_allocation_ratio: Decimal | float | None = None,
    enabled: bool = True,
    maintenance: bool = False,
    sync: bool = True,
) -> Host:
    host = Host(
        name=name,
        uri=uri,
        console_address=console_address or default_console_address(uri),
        default_pool=default_pool or "default",
        default_network=default_network or "default",
        enabled=enabled,
        maintenance=maintenance,
        ssh_private_key_encrypted=crypto.encrypt(ssh_private_key),
    )
    for field, value in (
        ("cpu_allocation_ratio", cpu_allocation_ratio),
        ("ram_allocation_ratio", ram_allocation_ratio),
        ("disk_allocation_ratio", disk_allocation_ratio),
    ):
        if value is not None:
            setattr(host, field, Decimal(str(value)))
    host.full_clean()  # also rebuilds host.uri from the validated fields (Host.clean)
    host.save()
    if host.has_ssh_key:
        keys.write_key(host)
    if sync:
        host_sync(host=host)
    return host


@audited("host.update", target="host")
def host_update(*, host: Host, ssh_private_key: str | None = None, **fields) -> Host:
    old_uri, old_pooled = host.uri, pooled_uri(host)
    for field, value in fields.items():
        setattr(host, field, value)
    if ssh_private_key is not None:
        host.ssh_private_key_encrypted = crypto.encrypt(ssh_private_key)
    host.full_clean()
    host.save()
    if ssh_private_key is not None:
        keys.write_key(host)  # the new key, or no file at all when the key was cleared
    if host.uri != old_uri:
        if old_pooled:
            virt.get_pool().close(old_pooled)  # only this host's connection
        host_sync(host=host)
    return host


@audited("host.sync", target="host")
def host_sync(*, host: Host) -> Host:
    """Read capabilities, pools and networks from libvirt; mark the host online or failed.

    Bounded by the connect timeout: an unreachable host ends in 'error' (never reached) or
    'offline' (seen before) with advice, never in a hang.
    """
    try:
        uri = connection_uri(host)
        info = virt.host_info(uri)
        pools = virt.storage_pools(uri)
        nets = virt.networks(uri)
    except virt.VirtError as exc:
        _record_failure(host, exc)
        return host
    host.capabilities = info.as_dict()
    host.storage_pools = [asdict(p) for p in pools]
    host.networks = [asdict(n) for n in nets]
    host.synced_at = host.last_seen_at = timezone.now()
    # One transaction: the transition is announced (on commit) after the row is saved.
    with transaction.atomic():
        _set_status(host, Host.Status.ONLINE)
        host.save()
    return host


def _record_failure(host: Host, exc: Exception) -> None:
    status = Host.Status.OFFLINE if host.last_seen_at else Host.Status.ERROR
    if not isinstance(exc, virt.HostUnreachable):
        status = Host.Status.ERROR
    with transaction.atomic():  # announced after the save, as in host_sync
        _set_status(host, status, explain(exc))
        host.save(update_fields=["status", "last_error"])


def host_check_health(*, host: Host) -> Host:
    """Ping the host; a host that comes (back) online is synced in full."""
    try:
        virt.ping(connection_uri(host))
    except virt.VirtError as exc:
        _record_failure(host, exc)
        return host
    if host.status != Host.Status.ONLINE or not host.synced_at:
        return host_sync(host=host)
    host.last_seen_at = timezone.now()
    host.save(update_fields=["last_seen_at"])
    return host


@audited("host.delete", target="host")
def host_delete(*, host: Host) -> None:
    count = host.instances.count()
    if count:
        raise Conflict(
            f"Host {host.name} still has {count} instance(s); move or delete them first."
        )
    pooled = pooled_uri(host)  # before the delete: it needs the host's id
    host.delete()  # the key file goes with the row (Host's post_delete)
    if pooled:
        virt.get_pool().close(pooled)


@audited("host.maintenance", target="host")
def host_set_maintenance(*, host: Host, maintenance: bool) -> Host:
    """A host in maintenance takes no new instances (the scheduler and the migration
    targets refuse it); what runs on it keeps running until moved."""
    maintenance = bool(maintenance)
    if host.maintenance != maintenance:
        host.maintenance = maintenance
        host.save(update_fields=["maintenance"])
        transaction.on_commit(lambda: host_changed.send(sender=Host, host=host))
    return host


# Sent with `host` and `since` (its last_seen_at) when a host stays offline past the grace
# period; instances/hostdown.py marks its instances host-down (hosts imports no instances).
# Receivers return how many instances they marked.
host_lost = Signal()


def hosts_mark_lost(*, grace_seconds: float | None = None, now=None) -> dict[str, int]:
    """Hosts offline (or in error) and not seen for longer than the grace period: tell the
    receivers, which mark their instances host-down. Returns {host name: instances marked}."""
    if grace_seconds is None:
        grace_seconds = settings.HOST_DOWN_GRACE_SECONDS
    cutoff = (now or timezone.now()) - timedelta(seconds=grace_seconds)
    lost = Host.objects.filter(
        status__in=(Host.Status.OFFLINE, Host.Status.ERROR),
        last_seen_at__isnull=False,
        last_seen_at__lte=cutoff,
    )
    marked = {}
    for host in lost:
        replies = host_lost.send(sender=Host, host=host, since=host.last_seen_at)
        count = sum(r for _, r in replies if isinstance(r, int))
        if count:
            log.warning(
                "host %s lost since %s: %d instance(s) host-down", host, host.last_seen_at, count
            )
        marked[host.name] = count
    return marked
