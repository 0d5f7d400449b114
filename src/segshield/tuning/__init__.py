"""segshield.tuning (filled in by its issue)."""
