"""Rebuild a host-down instance elsewhere from its mirror or backup (H3)."""
