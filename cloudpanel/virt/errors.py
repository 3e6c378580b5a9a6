"""The project's own exceptions for everything libvirt can say; callers never see libvirtError.

Each is also a kind of domain error (cloudpanel.errors), so the API and the pages answer a
missing domain like any missing object and an unreachable host like any unavailable one.
"""

from cloudpanel import errors


class VirtError(Exception):
    """A libvirt operation failed; the message is meant for a person."""


class HostUnreachable(VirtError, errors.HostUnavailable):
    """The host could not be reached or refused the connection."""


class NotFound(VirtError, errors.NotFound):
    """The domain, volume, pool or network does not exist on the host."""


class AlreadyExists(VirtError, errors.Conflict):
    """An object of that name already exists on the host."""


class OperationInvalid(VirtError, errors.Conflict):
    """The operation is not possible in the object's current state."""


class AgentUnavailable(VirtError, errors.Conflict):
    """No QEMU guest agent answers: the guest runs none, is not up yet, or has no channel.

    An expected state, not a failure: pages show the agent's features as unavailable.
    """
