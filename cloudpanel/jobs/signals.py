"""Sent whenever a job's state changes; the socket layer (events.py) listens.

A signal keeps the jobs framework free of Channels: the runner announces, and whoever
delivers (today the WebSockets) subscribes in JobsConfig.ready.
"""

from django.dispatch import Signal

# Sent with `job` (a cloudpanel.jobs.models.Job) after every saved change.
job_changed = Signal()
