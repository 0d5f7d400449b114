"""segshield.defenses (filled in by its issue)."""
