"""segshield.diagnosis (filled in by its issue)."""
