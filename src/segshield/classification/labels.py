"""Deprecated module: its names moved (see :mod:`segshield.classification`)."""

from segshield._deprecation import moved_names
from segshield.classification import MOVED

__getattr__ = moved_names(__name__, MOVED)
