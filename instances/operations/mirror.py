"""Disk mirroring: block copy, pivot, stop (H4)."""
