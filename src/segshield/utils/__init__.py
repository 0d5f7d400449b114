"""Shared utilities: image I/O, progress bars, reproducibility."""
