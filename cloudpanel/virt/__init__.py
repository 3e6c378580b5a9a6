"""The only package that imports libvirt. Everything else calls these functions."""

from .errors import AlreadyExists, HostUnreachable, NotFound, OperationInvalid, VirtError
from .hosts import host_info, list_domains, networks, ping, storage_pools
from .pool import get_pool
from .types import DomainSummary, HostInfo, KsmInfo, NetworkInfo, StoragePoolInfo

__all__ = [
    "AlreadyExists",
    "DomainSummary",
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
