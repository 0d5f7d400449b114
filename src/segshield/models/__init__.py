"""segshield.models (filled in by its issue)."""
