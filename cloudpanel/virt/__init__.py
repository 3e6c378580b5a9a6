"""The only package that imports libvirt. Everything else calls these functions."""

from .errors import (
    AgentUnavailable,
    AlreadyExists,
    HostUnreachable,
    NotFound,
    OperationInvalid,
    VirtError,
)
from .hosts import host_info, list_domains, networks, ping, storage_pools
from .pool import get_pool
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
    "DomainSummary",
    "GuestFilesystem",
    "GuestInfo",
    "GuestInterface",
    "HostInfo",
    "HostUnreachable",
    "KsmInfo",
    "NetworkInfo",
    "NotFound",
    "OperationInvalid",
    "StoragePoolInfo",
    "VirtError",
    "get_pool",
    "host_info",
    "list_domains",
    "networks",
    "ping",
    "storage_pools",
]
