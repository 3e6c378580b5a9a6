"""Sent whenever a host's status changes; hosts/events.py publishes (services stay free of
Channels)."""

from django.dispatch import Signal

# Sent with `host` (a hosts.models.Host, as saved).
host_changed = Signal()
