"""Sent whenever an instance's live state may have changed; instances/events.py publishes.

A signal keeps services, operations and the watcher free of Channels (see the import
contracts in pyproject.toml): they announce, the socket layer delivers.
"""

from django.dispatch import Signal

# Sent with `instance` (an instances.models.Instance, as saved) after a change of state.
instance_changed = Signal()
