"""Backups, restore as a new instance, capture as an image (H5)."""
