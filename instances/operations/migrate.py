"""Live migration (H1)."""
