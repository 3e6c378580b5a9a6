"""Host evacuation (H3)."""
