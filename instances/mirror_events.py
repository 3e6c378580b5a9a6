"""What a block-job event of the host watcher changes in an instance's disk mirrors."""

from __future__ import annotations


def on_block_job(instance, host, uri: str, event) -> None:
    """Called by the watcher (instances/watcher/apply.py) for every BLOCK_JOB event of a
    managed domain."""
