"""segshield.evaluation (filled in by its issue)."""
