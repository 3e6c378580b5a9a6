"""The registry of operations: every job kind is one registered Operation object.

Kept apart from operations.py (which creates jobs through the services) so that the runner
in services.py can look a kind up without importing back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .operations import Operation

_operations: dict[str, Operation] = {}


class UnknownOperation(LookupError):
    """No operation is registered for a job kind (a programming error, never user input)."""


def register(operation: Operation) -> Operation:
    """Register `operation` under its kind; registering a kind twice is a bug."""
    existing = _operations.get(operation.kind)
    if existing is not None and type(existing) is not type(operation):
        raise ValueError(f"job kind {operation.kind!r} is already registered by {existing!r}")
    _operations[operation.kind] = operation
    return operation


def get(kind: str) -> Operation:
    try:
        return _operations[kind]
    except KeyError:
        raise UnknownOperation(f"no operation registered for job kind {kind!r}") from None


def registered() -> dict[str, Operation]:
    return dict(_operations)
