"""segshield.attacks (filled in by its issue)."""
