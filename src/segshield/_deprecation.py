"""Deprecated aliases for names that moved: they keep working, with a warning, for one release.

A package that moved a public name keeps it importable from the old place with a
module-level ``__getattr__`` built here; the alias is listed in CHANGELOG.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["moved_names"]


def moved_names(
    module: str, moved: dict[str, tuple[str, Callable[[], Any]]]
) -> Callable[[str], Any]:
    """Build a module ``__getattr__`` that serves moved names with a ``DeprecationWarning``.

    Args:
        module: the old module's ``__name__``.
        moved: old name -> (new dotted path for the message, a function returning the object;
            called on first use, so the new place may import the old one).

    Returns:
        A function for ``__getattr__`` at module level.

    Raises:
        AttributeError: (from the returned function) a name that never existed there.

    Example:
        >>> import math, warnings
        >>> getattr_ = moved_names("pkg.old", {"pi": ("math.pi", lambda: math.pi)})
        >>> with warnings.catch_warnings(record=True) as w:
        ...     warnings.simplefilter("always")
        ...     round(getattr_("pi"), 2), w[0].category.__name__
        (3.14, 'DeprecationWarning')
    """

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new, get = moved[name]
        warnings.warn(
            f"{module}.{name} is deprecated and goes in the next release; use {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return get()

    return __getattr__
