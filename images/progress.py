"""Progress reporting shared by the long image work: downloads (intake) and copies (replicas)."""

from __future__ import annotations

import time

PROGRESS_EVERY = 1.0  # seconds between job progress writes


class Throttle:
    """True at most once per `every` seconds (monotonic clock), so progress writes stay cheap."""

    def __init__(self, every: float):
        self.every = every
        self.last = 0.0

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            return True
        return False


def mib(value: int) -> str:
    return f"{value / (1024 * 1024):.1f} MiB"


def describe_failure(exc: BaseException, what: str) -> str:
    """What an image's or a copy's error field says after `exc` stopped the work."""
    if exc.__class__.__name__ == "JobCancelled":
        return f"{what} was cancelled."
    return str(exc) or exc.__class__.__name__
