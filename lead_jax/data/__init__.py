"""Data layer (being assembled)."""
