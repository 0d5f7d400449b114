"""Progress bars for long work (tqdm, imported lazily), written to stderr.

Bars are disabled when stderr is not a terminal unless ``SEGSHIELD_PROGRESS=1``, so
logs and CI output stay readable; ``SEGSHIELD_PROGRESS=0`` always disables them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

__all__ = ["progress", "progress_enabled"]


def progress_enabled() -> bool:
    """Whether progress bars are shown (see module docstring)."""
    flag = os.environ.get("SEGSHIELD_PROGRESS")
    if flag is not None:
        return flag not in ("0", "", "false", "no")
    return sys.stderr.isatty()


def progress(
    iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar when bars are enabled."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False)
