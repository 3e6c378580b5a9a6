"""Cold migration (H2)."""
