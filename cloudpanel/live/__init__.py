"""The live browser: events and metrics from the hosts to the pages, as they happen.

- publisher: the one module that sends live events to Channels groups (services announce
  changes through Django signals; the receivers here and in each app's events.py publish).
- metrics: the bounded store of recent metric samples (Redis lists, capped in time).
- consumers: the /ws/status/ socket (snapshot, then deltas, each checked against access).
"""
