"""Spec strings ``"name:key=value,key=value"``: one splitter and one value parser.

Used by the model and attack registries (the defence registry parses values by each
parameter's declared type but splits with :func:`split_spec` too). Never ``eval``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["split_spec", "parse_value"]


def split_spec(spec: str, bad_pair: Callable[[str], str]) -> tuple[str, list[tuple[str, str]]]:
    """Split ``"name:key=value,..."`` into the name and ``(key, value text)`` pairs.

    Args:
        spec: the spec string (surrounding white space ignored).
        bad_pair: builds the error message for a part that is not ``key=value``.

    Returns:
        ``(name, pairs)``; names and keys stripped, values stripped text.

    Raises:
        ValueError: a part without ``=`` or with an empty key (message from ``bad_pair``).

    Example:
        >>> split_spec("pgd:eps=8/255, steps=10", lambda p: p)
        ('pgd', [('eps', '8/255'), ('steps', '10')])
    """
    name, _, rest = spec.strip().partition(":")
    pairs: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(bad_pair(part))
        pairs.append((key.strip(), value.strip()))
    return name.strip(), pairs


def parse_value(text: str) -> Any:
    """Type a spec value: bool, ``none``, int, float, a fraction ``a/b``, else the text.

    Example:
        >>> [parse_value(t) for t in ("true", "none", "3", "1e-7", "2/4", "l2")]
        [True, None, 3, 1e-07, 0.5, 'l2']
    """
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if "/" in text:
        num, _, den = text.partition("/")
        try:
            return float(num) / float(den)
        except (ValueError, ZeroDivisionError):
            return text
    return text.strip()
