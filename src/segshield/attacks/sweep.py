"""Sweeps in attack specs: ``pgd:eps={1,2,4,8,16}/255`` is five attacks.

A brace group ``{a,b,c}`` in a spec stands for one attack per item: the group is
replaced by each item in turn, as text, so what stands around it stays
(``eps={1,2}/255`` -> ``eps=1/255``, ``eps=2/255``; ``tau={1,10}e-7`` -> ``tau=1e-7``,
``tau=10e-7``). Several groups in one spec are **zipped**, not crossed: item ``i`` of
every group goes into attack ``i``, so all groups must have the same number of items.
This is how one spec sweeps the published ASMA step sizes times 1, 10, 100 and 1000
together::

    asma:tau={1,10,100,1000}e-7,beta={1,10,100,1000}e-6,steps=1001

For a cross product, give one spec per value of the other key (or several ``--attack``
flags). A spec without braces is itself. Each expanded spec is stored under its own
text (``pgd:eps=4/255``); the registry reads it like any other spec. Groups cannot nest
and items cannot be empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["expand_sweep", "expand_sweeps", "is_sweep"]

_GROUP = re.compile(r"\{([^{}]*)\}")


def is_sweep(spec: str) -> bool:
    """Whether ``spec`` holds a brace group (``{...}``).

    Example:
        >>> is_sweep("pgd:eps={1,2}/255"), is_sweep("pgd:eps=8/255")
        (True, False)
    """
    return "{" in spec or "}" in spec


def _check_braces(spec: str) -> None:
    """Braces balanced, not nested; the message names the position and the fix."""
    depth = 0
    for pos, ch in enumerate(spec):
        if ch == "{":
            if depth:
                raise ValueError(
                    f"attack sweep {spec!r}: nested '{{' at position {pos}; brace groups "
                    "cannot nest, write one group per key (groups in one spec are zipped)"
                )
            depth = 1
        elif ch == "}":
            if not depth:
                raise ValueError(
                    f"attack sweep {spec!r}: '}}' at position {pos} closes no group; write "
                    "a group as {a,b,c}, e.g. pgd:eps={1,2,4}/255"
                )
            depth = 0
    if depth:
        raise ValueError(
            f"attack sweep {spec!r}: '{{' is never closed; write a group as {{a,b,c}}, "
            "e.g. pgd:eps={1,2,4}/255"
        )


def expand_sweep(spec: str) -> list[str]:
    """Expand the brace groups of one attack spec (zipped; see the module docstring).

    Args:
        spec: an attack spec, with or without brace groups.

    Returns:
        The expanded specs in item order (``[spec]`` when it has no group), stripped.

    Raises:
        TypeError: ``spec`` is not a string.
        ValueError: unbalanced or nested braces, an empty group or item, groups of
            different lengths, or two items that give the same spec; the message says
            which and how to write it.

    Example:
        >>> expand_sweep("pgd:eps={1,2,4}/255,targeted=true")
        ['pgd:eps=1/255,targeted=true', 'pgd:eps=2/255,targeted=true', \
'pgd:eps=4/255,targeted=true']
        >>> expand_sweep("asma:tau={1,10}e-7,beta={1,10}e-6")
        ['asma:tau=1e-7,beta=1e-6', 'asma:tau=10e-7,beta=10e-6']
    """
    if not isinstance(spec, str):
        raise TypeError(f"attack sweep: expected a spec string, got {type(spec).__name__}")
    spec = spec.strip()
    if not is_sweep(spec):
        return [spec]
    _check_braces(spec)
    groups = []
    for match in _GROUP.finditer(spec):
        items = [item.strip() for item in match.group(1).split(",")]
        if not any(items):
            raise ValueError(
                f"attack sweep {spec!r}: empty group {match.group(0)}; list at least one "
                "value, e.g. {1,2,4}"
            )
        if not all(items):
            raise ValueError(
                f"attack sweep {spec!r}: empty item in {match.group(0)}; remove the extra comma"
            )
        groups.append(items)
    lengths = sorted({len(g) for g in groups})
    if len(lengths) > 1:
        sizes = ", ".join(f"{{{','.join(g)}}} has {len(g)}" for g in groups)
        raise ValueError(
            f"attack sweep {spec!r}: groups in one spec are zipped and need the same "
            f"number of values, got {sizes}; give them equal lengths, or one spec per "
            "value of one key for a cross product"
        )
    parts = _GROUP.split(spec)  # text, group, text, group, ..., text
    out = []
    for i in range(lengths[0]):
        text = "".join(p if k % 2 == 0 else groups[k // 2][i] for k, p in enumerate(parts))
        out.append(text)
    dupes = sorted({s for s in out if out.count(s) > 1})
    if dupes:
        raise ValueError(
            f"attack sweep {spec!r}: gives {dupes[0]!r} more than once; list each value once"
        )
    return out


def expand_sweeps(specs: Iterable[str], name: str = "attacks") -> list[str]:
    """Expand every spec of a list (:func:`expand_sweep`), keeping the order.

    Args:
        specs: attack specs, some perhaps sweeps.
        name: the setting's name for the messages (``attacks``, ``adaptive``).

    Returns:
        The expanded specs, each once (a spec given twice, directly or by two
        sweeps, is kept at its first place).

    Raises:
        ValueError: a bad sweep; the message starts with ``name``.

    Example:
        >>> expand_sweeps(["asma", "pgd:eps={4,8}/255", "pgd:eps=4/255"])
        ['asma', 'pgd:eps=4/255', 'pgd:eps=8/255']
    """
    out: list[str] = []
    for spec in specs:
        try:
            expanded = expand_sweep(spec)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        out.extend(s for s in expanded if s not in out)
    return out
