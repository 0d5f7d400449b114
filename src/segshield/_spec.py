"""Spec strings ``"name:key=value,key=value"``: the splitter, the value grammar, the formatter.

One grammar serves every registry (defences, attacks, models; see
:class:`segshield._registry.Registry`). A value is read as, in this order: a boolean
(``true``/``false``), ``none``, an integer, a float (``1e-7``, ``inf``), a fraction
``a/b`` (``8/255``), else the text itself. Where a parameter's annotation names its type
(:func:`annotation_types`), :func:`parse_typed` reads the text as that type and says what
was expected otherwise. A parameter annotated as a sequence (``tuple[int, ...]``,
``Sequence[int]``, ``list[int]``; :func:`sequence_item_types`) takes a dash-separated
list, ``channels=16-32-64-128`` (:func:`parse_list`). Never ``eval``.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = [
    "split_spec",
    "parse_value",
    "parse_typed",
    "annotation_types",
    "format_value",
    "sequence_item_types",
    "parse_list",
    "LIST_SEPARATOR",
]

#: separator of the items of a list value (``channels=16-32-64``)
LIST_SEPARATOR = "-"

_NONE = type(None)
#: annotation names understood without evaluating them
_TYPE_NAMES: dict[str, type] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "None": _NONE,
    "NoneType": _NONE,
}
#: a sequence annotation written as text: ``tuple[int, ...]``, ``Sequence[int]``, ``list[int]``
_SEQUENCE_TEXT = re.compile(
    r"^(?:(?P<tuple>tuple|typing\.Tuple|Tuple)\[\s*(?P<titem>\w+)\s*,\s*\.\.\.\s*\]"
    r"|(?:list|List|typing\.List|Sequence|typing\.Sequence|collections\.abc\.Sequence)"
    r"\[\s*(?P<item>\w+)\s*\])$"
)
_SEQUENCE_ORIGINS = (tuple, list, collections.abc.Sequence)
#: spellings of a boolean where the parameter is declared ``bool``
_BOOL_WORDS = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
    "1": True,
    "0": False,
}


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


def _number(text: str) -> int | float | None:
    """``text`` as an int, a float or a fraction ``a/b``; None when it is none of them."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    num, slash, den = text.partition("/")
    if slash:
        try:
            return float(num) / float(den)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def parse_value(text: str) -> Any:
    """Type a spec value: bool, ``none``, int, float, a fraction ``a/b``, else the text.

    Args:
        text: the value text of one ``key=value`` pair.

    Returns:
        The typed value (stripped text when it is no number, bool or none).

    Example:
        >>> [parse_value(t) for t in ("true", "none", "3", "1e-7", "2/4", "l2")]
        [True, None, 3, 1e-07, 0.5, 'l2']
    """
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    value = _number(text)
    return text.strip() if value is None else value


def annotation_types(annotation: Any) -> tuple[type, ...] | None:
    """The value types a parameter annotation allows, read without evaluating it.

    Understands ``int``, ``float``, ``bool``, ``str``, ``None`` and unions of them, as
    types or as the strings of ``from __future__ import annotations``.

    Args:
        annotation: ``inspect.Parameter.annotation``.

    Returns:
        The types in declaration order, or None for anything else (no annotation,
        containers, ``Any``): such values follow :func:`parse_value`.

    Example:
        >>> annotation_types("float | None"), annotation_types(int), annotation_types("Any")
        ((<class 'float'>, <class 'NoneType'>), (<class 'int'>,), None)
    """
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        parts = [p.strip() for p in annotation.split("|")]
        if all(p in _TYPE_NAMES for p in parts):
            return tuple(_TYPE_NAMES[p] for p in parts)
        return None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
    else:
        args = (_NONE,) if annotation is None else (annotation,)
    if all(a in _TYPE_NAMES.values() for a in args):
        return tuple(args)
    return None


def parse_typed(text: str, kinds: tuple[type, ...] | None) -> Any:
    """Read a spec value as one of the declared types (:func:`annotation_types`).

    ``none`` is None where None is allowed; ``str`` keeps the text as given (so
    ``table=1/2/3`` stays text); ``bool`` takes ``true/false``, ``yes/no``, ``on/off``,
    ``1/0``; ``float`` takes integers (kept as int), floats and fractions ``a/b``;
    ``int`` takes numbers with an integral value (``30``, ``1e3``, ``60/2``).

    Args:
        text: the value text.
        kinds: the allowed types, or None for the untyped grammar of :func:`parse_value`.

    Returns:
        The typed value.

    Raises:
        ValueError: the text is not of the declared type; the message says what was
            expected (``"expected an integer"``, ``"expected a number"``,
            ``"expected true or false"``).

    Example:
        >>> parse_typed("60/2", (float,)), parse_typed("1e3", (int,)), parse_typed("off", (bool,))
        (30.0, 1000, False)
    """
    if kinds is None:
        return parse_value(text)
    text = text.strip()
    low = text.lower()
    if _NONE in kinds and low == "none":
        return None
    if str in kinds:
        return text
    numeric = int in kinds or float in kinds
    if bool in kinds and (low in _BOOL_WORDS or not numeric):
        if low not in _BOOL_WORDS:
            raise ValueError("expected true or false")
        return _BOOL_WORDS[low]
    value = _number(text)
    if float in kinds:
        if value is None:
            raise ValueError("expected a number")
        return value
    if int in kinds:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ValueError("expected an integer")
        return value
    return parse_value(text)


def format_value(value: Any) -> str:
    """Write a value so that :func:`parse_typed` reads it back unchanged.

    Args:
        value: bool, None, int, float, text, or a tuple/list of them.

    Returns:
        ``true``/``false``, ``none``, the shortest exact float (``30``, ``0.1``,
        ``0.03137254901960784``), a dash-separated list (``16-32-64``, read back by
        :func:`parse_list`), or ``str(value)``.

    Example:
        >>> [format_value(v) for v in (True, None, 30.0, 8 / 255, "zero", (16, 32))]
        ['true', 'none', '30', '0.03137254901960784', 'zero', '16-32']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return LIST_SEPARATOR.join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    return str(value)


def _sequence_items(annotation: Any) -> tuple[type, ...] | None:
    """The item types of one sequence annotation (text or typing object), or None."""
    if isinstance(annotation, str):
        match = _SEQUENCE_TEXT.match(annotation.strip())
        item = match and (match.group("titem") or match.group("item"))
        kind = _TYPE_NAMES.get(item or "")
        return None if kind in (None, _NONE) else (kind,)
    if typing.get_origin(annotation) not in _SEQUENCE_ORIGINS:
        return None
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            return None
        args = args[:1]
    if len(args) == 1 and args[0] in _TYPE_NAMES.values() and args[0] is not _NONE:
        return (args[0],)
    return None


def sequence_item_types(annotation: Any) -> tuple[tuple[type, ...], bool] | None:
    """The item types of a sequence annotation, read without evaluating it.

    Understands ``tuple[T, ...]``, ``list[T]`` and ``Sequence[T]`` for ``T`` one of
    ``int``, ``float``, ``bool``, ``str``, optionally ``| None``, as types or as the
    strings of ``from __future__ import annotations``.

    Args:
        annotation: ``inspect.Parameter.annotation``.

    Returns:
        ``(item types, whether None is allowed)``, or None when the annotation is no
        such sequence.

    Example:
        >>> sequence_item_types("tuple[int, ...] | None"), sequence_item_types("int")
        (((<class 'int'>,), True), None)
    """
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        parts = [p.strip() for p in annotation.split("|")]
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        parts = list(typing.get_args(annotation))
    else:
        parts = [annotation]
    optional = any(p in ("None", "NoneType", _NONE, None) for p in parts)
    rest = [p for p in parts if p not in ("None", "NoneType", _NONE, None)]
    items = _sequence_items(rest[0]) if len(rest) == 1 else None
    return None if items is None else (items, optional)


def parse_list(text: str, items: tuple[type, ...]) -> tuple[Any, ...]:
    """Read a dash-separated list value (``16-32-64-128``), each item typed by ``items``.

    Items are separated by :data:`LIST_SEPARATOR` (``-``), so an item cannot be negative
    or written with a negative exponent (``1e-3``).

    Args:
        text: the value text.
        items: the allowed item types (:func:`parse_typed`).

    Returns:
        The items as a tuple.

    Raises:
        ValueError: an empty item, or an item not of the declared type; the message
            says what was expected (``"expected a dash-separated list of integers such
            as 16-32-64"``).

    Example:
        >>> parse_list("16-32-64", (int,)), parse_list("0.5", (float,))
        ((16, 32, 64), (0.5,))
    """
    noun = {int: "integers", float: "numbers", bool: "true/false values"}.get(items[0], "items")
    expected = f"expected a dash-separated list of {noun} such as 16-32-64"
    parts = [p.strip() for p in text.strip().split(LIST_SEPARATOR)]
    if not all(parts):
        raise ValueError(expected)
    try:
        return tuple(parse_typed(p, items) for p in parts)
    except ValueError:
        raise ValueError(expected) from None
