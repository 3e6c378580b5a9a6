"""Every long operation on instances, one module each, registered as objects.

Pages and the API start them the same way: `operation.start(user=..., target=instance,
**params)` checks (who, which states, which parameters) and queues the job;
`instances.operations.create.CREATE.start(user=..., name=..., ...)` creates. The worker runs
`operation.run`, and a job that dies half-way gets `operation.on_abandoned`.
"""

from . import backup, cold_migrate, migrate, mirror, rebuild  # noqa: F401 - register
from .create import CREATE
from .delete import DELETE
from .power import POWER, PowerOperation
from .resize import RESIZE
from .snapshot import DELETE_SNAPSHOT, REVERT_SNAPSHOT, TAKE_SNAPSHOT

__all__ = [
    "CREATE",
    "DELETE",
    "DELETE_SNAPSHOT",
    "POWER",
    "PowerOperation",
    "RESIZE",
    "REVERT_SNAPSHOT",
    "TAKE_SNAPSHOT",
]
