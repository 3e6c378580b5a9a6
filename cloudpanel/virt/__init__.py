"""The only package that imports libvirt. Everything else calls these functions."""

from .errors import (
    AgentUnavailable,
    AlreadyExists,
    HostUnreachable,
    NotFound,
    OperationInvalid,
    VirtError,
)
from .events import ConnectionClosed, DomainEvent, HostSubscription
from .hosts import host_info, list_domains, networks, ping, storage_pools
from .pool import get_pool
from .stats import DomainCounters, domain_counters
from .types import (
    DomainSummary,
    GuestFilesystem,
    GuestInfo,
    GuestInterface,
    HostInfo,
    KsmInfo,
    NetworkInfo,
    StoragePoolInfo,
)

__all__ = [
    "AgentUnavailable",
    "AlreadyExists",
    "ConnectionClosed",
    "DomainCounters",
    "DomainEvent",
    "DomainSummary",
    "GuestFilesystem",
    "GuestInfo",
    "GuestInterface",
    "HostInfo",
    "HostSubscription",
    "HostUnreachable",
    "KsmInfo",
    "NetworkInfo",
    "NotFound",
    "OperationInvalid",
    "StoragePoolInfo",
    "VirtError",
    "domain_counters",
    "get_pool",
    "host_info",
    "list_domains",
    "networks",
    "ping",
    "storage_pools",
]
