"""The project's own exceptions for everything libvirt can say; callers never see libvirtError."""


class VirtError(Exception):
    """A libvirt operation failed; the message is meant for a person."""


class HostUnreachable(VirtError):
    """The host could not be reached or refused the connection."""


class NotFound(VirtError):
    """The domain, volume, pool or network does not exist on the host."""


class AlreadyExists(VirtError):
    """An object of that name already exists on the host."""


class OperationInvalid(VirtError):
    """The operation is not possible in the object's current state."""
