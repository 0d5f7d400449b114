"""One registry for every kind of component: names to factories, spec strings to instances.

Defences, attacks and models are built from spec strings ``NAME`` or
``NAME:key=value,...`` (``fr:pd=30,pad=zero``, ``pgd:eps=8/255``, ``unet:width=16``). A
:class:`Registry` maps names to factories (classes or functions), reads each factory's
parameters (names, defaults, annotations) from its signature and reads every value with
the one grammar of :mod:`segshield._spec` (typed by the annotation; never ``eval``).
Its errors list the valid names or parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from segshield._spec import (
    annotation_types,
    format_value,
    parse_list,
    parse_typed,
    sequence_item_types,
    split_spec,
)

__all__ = ["Registry", "Entry", "Param", "signature_params", "split"]

T = TypeVar("T")
_NONE = type(None)
_SKIPPED_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True)
class Param:
    """One spec parameter of a factory, read from its signature.

    Attributes:
        name: the keyword.
        kinds: the declared value types (:func:`segshield._spec.annotation_types`), or
            None when undeclared (then values follow the untyped grammar).
        default: the default, or ``inspect.Parameter.empty`` when required.
        help: one line for listings ("" when none was given).
        items: for a sequence parameter (``tuple[int, ...]``, ``Sequence[int]``;
            :func:`segshield._spec.sequence_item_types`), the item types: its value is a
            dash-separated list (``16-32-64``); ``kinds`` is then ``(tuple,)``, or
            ``(tuple, NoneType)`` when None is allowed. None for other parameters.
    """

    name: str
    kinds: tuple[type, ...] | None
    default: Any
    help: str = ""
    items: tuple[type, ...] | None = None

    @property
    def required(self) -> bool:
        """Whether the parameter has no default."""
        return self.default is inspect.Parameter.empty

    @property
    def type_name(self) -> str:
        """The first declared type other than None (``"float"`` for ``float | None``,
        ``"list[int]"`` for ``tuple[int, ...]``)."""
        if self.items is not None:
            return f"list[{self.items[0].__name__}]"
        named = [k for k in self.kinds or () if k is not _NONE]
        return named[0].__name__ if named else "any"

    def parse(self, text: str) -> Any:
        """Read the value text as this parameter's type (ValueError says what was expected)."""
        if self.items is None:
            return parse_typed(text, self.kinds)
        if _NONE in (self.kinds or ()) and text.strip().lower() == "none":
            return None
        return parse_list(text, self.items)

    @classmethod
    def from_annotation(cls, name: str, annotation: Any, default: Any, help: str = "") -> Param:
        """The parameter ``name`` declared with ``annotation`` (a type or its text).

        Example:
            >>> Param.from_annotation("channels", "tuple[int, ...]", (8, 16)).parse("4-8")
            (4, 8)
        """
        seq = sequence_item_types(annotation)
        if seq is None:
            return cls(name, annotation_types(annotation), default, help)
        items, optional = seq
        return cls(name, (tuple, _NONE) if optional else (tuple,), default, help, items)


@dataclass(frozen=True)
class Entry:
    """A registered name: its factory, parameters, summary and the class it builds."""

    name: str
    factory: Callable[..., Any]
    params: Mapping[str, Param]
    summary: str
    builds: Any = field(default=None)


def signature_params(
    factory: Callable[..., Any],
    *,
    skip: Iterable[str] = (),
    help: Mapping[str, str] | None = None,
) -> dict[str, Param]:
    """The keyword parameters of a class or function, in signature order.

    Args:
        factory: a class (its ``__init__`` without ``self``) or a function.
        skip: parameters that are not spec settings (given by the caller, e.g. a
            model's ``in_channels``). ``*args``/``**kwargs`` are always left out.
        help: one line per parameter for listings.

    Returns:
        name -> :class:`Param`.

    Raises:
        ValueError: ``help`` names a parameter the factory does not have.

    Example:
        >>> def f(eps: float = 0.1, steps: int = 10, *, note="x"): ...
        >>> {k: (p.type_name, p.default) for k, p in signature_params(f).items()}
        {'eps': ('float', 0.1), 'steps': ('int', 10), 'note': ('any', 'x')}
    """
    help = dict(help or {})
    skip = set(skip)
    out: dict[str, Param] = {}
    for p in inspect.signature(factory).parameters.values():
        if p.name in skip or p.name == "self" or p.kind in _SKIPPED_KINDS:
            continue
        out[p.name] = Param.from_annotation(p.name, p.annotation, p.default, help.pop(p.name, ""))
    if help:
        raise ValueError(
            f"help: {', '.join(sorted(help))} not parameters of {factory.__name__}; "
            f"its parameters: {', '.join(out) or '(none)'}"
        )
    return out


def split(spec: Any, kind: str, example: str = "") -> tuple[str, list[tuple[str, str]]]:
    """Check a spec string and split it into the lower-case name and the value texts.

    Args:
        spec: ``"NAME"`` or ``"NAME:key=value,..."``.
        kind: what it names, for messages (``"attack"``).
        example: a valid spec shown in the messages ("" for none).

    Returns:
        ``(name, [(key, text), ...])``.

    Raises:
        TypeError: ``spec`` is not a string.
        ValueError: empty name, or a part that is not ``key=value``.

    Example:
        >>> split(" PGD : eps=8/255 ", "attack")
        ('pgd', [('eps', '8/255')])
    """
    hint = f"; example: {example}" if example else ""
    if not isinstance(spec, str):
        raise TypeError(f"{kind} spec: expected a string like {example or 'NAME'!r}, got {spec!r}")
    name, pairs = split_spec(
        spec, lambda part: f"{kind} spec {spec!r}: expected key=value, got {part!r}{hint}"
    )
    if not name:
        raise ValueError(f"{kind} spec: expected 'NAME[:key=value,...]', got {spec!r}{hint}")
    return name.lower(), pairs


class Registry(Generic[T]):
    """Names to factories, and spec strings ``NAME:key=value,...`` to built objects.

    Parameters, defaults and value types come from each factory's signature; values
    are read with one grammar (:func:`segshield._spec.parse_typed`). Unknown names and
    parameters are refused with the valid ones listed.

    Args:
        kind: what the registry holds, singular, for messages (``"defense"``).
        names_label: the word before the list of valid names (``"names"`` gives
            ``"valid names: fr, jpeg"``; ``"attacks"`` gives ``"valid attacks: ..."``).
        hint: appended to the unknown-name message (e.g. where the names are listed).
        example: a valid spec shown in the syntax messages.
        noun: what a key is called in messages (``"parameter"``, ``"setting"``).
        key_error: exception raised for an unknown key. Default ValueError.
        skip: factory parameters that specs never set (the caller passes them to
            :meth:`build`), e.g. ``("in_channels", "num_classes")`` for models.

    Example:
        >>> reg = Registry("widget", example="box:size=2")
        >>> def box(size: int = 1, tag: str | None = None):
        ...     return ("box", size, tag)
        >>> _ = reg.register("box", box, summary="a box")
        >>> reg.build("box:size=60/2,tag=none")
        ('box', 30, None)
        >>> reg.spec("box", {"size": 3})
        'box:size=3'
        >>> reg.build("box:colour=red")
        Traceback (most recent call last):
        ...
        ValueError: widget 'box': unknown parameter(s) colour; valid parameters: size, tag
    """

    def __init__(
        self,
        kind: str,
        *,
        names_label: str = "names",
        hint: str = "",
        example: str = "",
        noun: str = "parameter",
        key_error: type[Exception] = ValueError,
        skip: Iterable[str] = (),
    ) -> None:
        self.kind = kind
        self.names_label = names_label
        self.hint = hint
        self.example = example
        self.noun = noun
        self.key_error = key_error
        self.skip = tuple(skip)
        self._entries: dict[str, Entry] = {}
        self._factories: dict[str, Callable[..., T]] = {}

    # -- registration ---------------------------------------------------------------
    def register(
        self,
        name: str,
        factory: Callable[..., T],
        *,
        summary: str | None = None,
        help: Mapping[str, str] | None = None,
        builds: Any = None,
        params_from: Callable[..., Any] | None = None,
    ) -> Callable[..., T]:
        """Add ``factory`` under ``name``; its parameters are read from its signature.

        Args:
            name: lower-case name without ``:``, ``,``, ``=`` or spaces.
            factory: a class or function; spec settings become its keyword arguments.
            summary: one line for listings (default: the first docstring line).
            help: one line per parameter for listings.
            builds: the class it builds, for listings (default: ``factory`` when it
                is a class).
            params_from: a function whose signature declares the parameters, for a
                factory taking ``**kwargs`` because it must know which keys a spec gave
                (it then receives only those). Default: ``factory`` itself.

        Returns:
            ``factory`` (unchanged).

        Raises:
            ValueError: a bad or already registered name, or ``help`` naming a
                parameter the factory does not have.
        """
        if not isinstance(name, str) or not name or name != name.strip().lower():
            raise ValueError(f"{self.kind} name: expected a lower-case name, got {name!r}")
        if any(c in name for c in ":,= "):
            raise ValueError(f"{self.kind} name: ':', ',', '=' and spaces not allowed: {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        source = factory if params_from is None else params_from
        if summary is None:
            summary = (inspect.getdoc(source) or "").partition("\n")[0]
        if builds is None and isinstance(factory, type):
            builds = factory
        params = signature_params(source, skip=self.skip, help=help)
        entry = Entry(name, factory, MappingProxyType(params), summary, builds)
        self._entries[name] = entry
        self._factories[name] = factory
        return factory

    # -- look-up --------------------------------------------------------------------
    @property
    def factories(self) -> Mapping[str, Callable[..., T]]:
        """Read-only live view name -> factory, in registration order."""
        return MappingProxyType(self._factories)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry:
        """The entry of ``name``.

        Raises:
            ValueError: unknown name; the message lists the valid ones.
        """
        if name not in self._entries:
            raise ValueError(
                f"{self.kind}: unknown name {name!r}; valid {self.names_label}: "
                f"{', '.join(self._entries)}{self.hint}"
            )
        return self._entries[name]

    def check_keys(self, name: str, keys: Iterable[str]) -> None:
        """Refuse keys that are not parameters of ``name`` (the message lists the valid ones).

        Raises:
            ValueError: unknown name.
            Exception: ``key_error`` (ValueError by default) for unknown keys.
        """
        params = self.entry(name).params
        unknown = [k for k in keys if k not in params]
        if unknown:
            raise self.key_error(
                f"{self.kind} {name!r}: unknown {self.noun}(s) {', '.join(unknown)}; "
                f"valid {self.noun}s: {', '.join(params) or '(none)'}"
            )

    # -- specs ----------------------------------------------------------------------
    def parse(self, spec: str) -> tuple[str, dict[str, Any]]:
        """Read a spec into the lower-case name and typed, checked settings.

        Args:
            spec: ``"NAME"`` or ``"NAME:key=value,..."``.

        Returns:
            ``(name, {key: value})`` in the order given.

        Raises:
            TypeError: ``spec`` is not a string.
            ValueError: bad syntax, unknown name, a key given twice, or a value not of
                its parameter's type (``"fr:pd: expected a number, got 'x'"``).
            Exception: ``key_error`` for an unknown key.
        """
        name, pairs = split(spec, self.kind, self.example)
        params = self.entry(name).params
        self.check_keys(name, [key for key, _ in pairs])
        out: dict[str, Any] = {}
        for key, text in pairs:
            if key in out:
                raise ValueError(f"{self.kind} {name!r}: {self.noun} {key!r} given twice")
            try:
                out[key] = params[key].parse(text)
            except ValueError as exc:
                raise ValueError(f"{name}:{key}: {exc}, got {text!r}") from None
        return name, out

    def build(self, spec: str, /, *args: Any, **overrides: Any) -> T:
        """Build the object a spec names.

        Args:
            spec: ``"NAME"`` or ``"NAME:key=value,..."``.
            *args: positional arguments for the factory (the ``skip`` parameters).
            **overrides: settings that take precedence over the spec's.

        Returns:
            ``factory(*args, **settings)``.

        Raises:
            TypeError, ValueError: as :meth:`parse`, an unknown override, or what the
                factory raises for a bad value.
        """
        name, params = self.parse(spec)
        self.check_keys(name, overrides)
        return self._entries[name].factory(*args, **{**params, **overrides})

    def spec(self, name: str, params: Mapping[str, Any] | None = None) -> str:
        """The spec string of ``name`` with ``params``; :meth:`parse` reads it back.

        Raises:
            ValueError: unknown name, or a text value containing ``,``.
            Exception: ``key_error`` for an unknown key.
        """
        params = dict(params or {})
        self.check_keys(self.entry(name).name, params)
        for key, value in params.items():
            if isinstance(value, str) and "," in value:
                raise ValueError(f"{name}:{key}: a spec value cannot contain ',', got {value!r}")
        if not params:
            return name
        return name + ":" + ",".join(f"{k}={format_value(v)}" for k, v in params.items())

    def describe(self) -> list[dict[str, Any]]:
        """One dict per entry: ``name``, ``summary`` and ``params`` (key -> ``type``,
        ``default`` (None when required), ``help``), in registration order."""
        return [
            {
                "name": e.name,
                "summary": e.summary,
                "params": {
                    k: {
                        "type": p.type_name,
                        "default": None if p.required else p.default,
                        "help": p.help,
                    }
                    for k, p in e.params.items()
                },
            }
            for e in self._entries.values()
        ]
