"""Registry of defences: spec strings ``"name:key=value,..."`` to instances, and back.

Reference: ARCHITECTURE.md "Defences". Each registry entry maps a name to a factory
and declares its parameters (type, default, help); values are parsed by type, never
evaluated. ``Defense.spec()`` produces strings this module parses.

Spec grammar: ``NAME`` or ``NAME:KEY=VALUE[,KEY=VALUE...]``; booleans are
``true/false``; FR's custom table is ``table=s0/s1/.../s63`` (row-major, 64 steps per
channel) or ``file=PATH`` (a JSON file from ``FrequencyRefinement.to_file``; the path
must not contain ``,``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segshield._spec import split_spec
from segshield.defenses.base import Defense
from segshield.defenses.bitdepth import BitDepth
from segshield.defenses.feature_distillation import FeatureDistillation
from segshield.defenses.fr import FrequencyRefinement, _parse_dtype, parse_table_string
from segshield.defenses.gaussian import Gaussian
from segshield.defenses.identity import Identity
from segshield.defenses.jpeg import Jpeg
from segshield.defenses.median import Median

__all__ = ["get_defense", "list_defenses", "parse_spec"]


@dataclass(frozen=True)
class _Param:
    kind: type  # int, float, bool or str
    default: Any
    help: str


@dataclass(frozen=True)
class _Entry:
    cls: type[Defense]
    factory: Callable[..., Defense]
    params: dict[str, _Param]
    summary: str


def _gradient_param(cls: type[Defense]) -> _Param:
    return _Param(str, cls.gradients[0], "gradient policy: " + " | ".join(cls.gradients))


def _make_fr(**kw: Any) -> Defense:
    table, path = kw.pop("table", None), kw.pop("file", None)
    if "dtype" in kw:
        kw["compute_dtype"] = _parse_dtype(kw.pop("dtype"))
    band_keys = sorted(set(kw) & {"pd", "ac", "gd", "pd_size", "ac_size"})
    if table is not None and path is not None:
        raise ValueError("fr: give either table=... or file=..., not both")
    if (table is not None or path is not None) and band_keys:
        raise ValueError(
            f"fr: band parameters {band_keys} cannot be combined with table= or file=; "
            "the table already fixes every step"
        )
    if path is not None:
        return FrequencyRefinement.from_file(path, **kw)
    if table is not None:
        return FrequencyRefinement.from_table(parse_table_string(table), **kw)
    return FrequencyRefinement(**kw)


_FR_PARAMS = {
    "pd": _Param(float, 30, "priority-defence step (DC and lowest AC terms)"),
    "ac": _Param(float, 5, "accuracy-compensation step"),
    "gd": _Param(float, 60, "global-defence step (high frequencies)"),
    "pd_size": _Param(int, 2, "PD band: u, v < pd_size"),
    "ac_size": _Param(int, 4, "AC band: u, v < ac_size"),
    "quality": _Param(int, None, "JPEG-style quality scaling of the table (1..100)"),
    "pad": _Param(str, "edge", "padding to multiples of 8: edge | zero (paper-faithful)"),
    "clip": _Param(bool, True, "clip the output to [0, 1]"),
    "gradient": _gradient_param(FrequencyRefinement),
    "dtype": _Param(str, "auto", "arithmetic: auto | float32 | float64"),
    "table": _Param(str, None, "custom table: 64 (or 64*C) steps s0/s1/... row-major"),
    "file": _Param(str, None, "custom table: JSON file from FrequencyRefinement.to_file"),
}

_REGISTRY: dict[str, _Entry] = {
    "fr": _Entry(
        FrequencyRefinement, _make_fr, _FR_PARAMS, "Frequency Refinement (Liu et al. 2020)"
    ),
    "jpeg": _Entry(
        Jpeg,
        lambda q=75, gradient="bpda": Jpeg(q, gradient),
        {"q": _Param(int, 75, "libjpeg quality 1..100"), "gradient": _gradient_param(Jpeg)},
        "JPEG through libjpeg/Pillow (YCbCr 4:2:0 for RGB)",
    ),
    "fd": _Entry(
        FeatureDistillation,
        FeatureDistillation,
        {
            "low": _Param(float, 25, "step in the low band"),
            "high": _Param(float, 30, "step elsewhere"),
            "low_size": _Param(int, 4, "low band: u, v < low_size"),
            "pad": _Param(str, "edge", "edge | zero"),
            "clip": _Param(bool, True, "clip the output to [0, 1]"),
            "gradient": _gradient_param(FeatureDistillation),
        },
        "Feature Distillation (Liu et al. 2019)",
    ),
    "bitdepth": _Entry(
        BitDepth,
        BitDepth,
        {"bits": _Param(int, 4, "bits per channel 1..16"), "gradient": _gradient_param(BitDepth)},
        "bit-depth reduction (Xu et al. 2018)",
    ),
    "median": _Entry(
        Median,
        Median,
        {"k": _Param(int, 3, "odd window size 1..31"), "gradient": _gradient_param(Median)},
        "median filter k x k",
    ),
    "gaussian": _Entry(
        Gaussian,
        Gaussian,
        {
            "sigma": _Param(float, 1.0, "blur sigma in pixels"),
            "gradient": _gradient_param(Gaussian),
        },
        "Gaussian blur",
    ),
    "none": _Entry(Identity, Identity, {}, "no defence (identity)"),
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_value(name: str, key: str, text: str, kind: type) -> Any:
    if kind is bool:
        low = text.lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise ValueError(f"{name}:{key}: expected true or false, got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name}:{key}: expected an integer, got {text!r}") from None
    if kind is float:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{name}:{key}: expected a number, got {text!r}") from None
        return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split a spec string into its name and typed parameters.

    Args:
        spec: ``"name"`` or ``"name:key=value,..."``.

    Returns:
        ``(name, params)`` with values parsed by each parameter's type.

    Raises:
        TypeError: ``spec`` is not a string.
        ValueError: unknown name (lists the valid ones), unknown or repeated parameter
            (lists the valid ones), or a value of the wrong type.

    Example:
        >>> parse_spec("fr:pd=30,pad=zero")
        ('fr', {'pd': 30, 'pad': 'zero'})
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected a string like 'fr:pd=30,ac=5,gd=60', got {spec!r}")
    head = spec.partition(":")[0].strip().lower()
    name, pairs = split_spec(spec, lambda item: f"{head}: expected key=value, got {item!r}")
    name = name.lower()
    if name not in _REGISTRY:
        raise ValueError(
            f"defense: unknown name {name!r}; valid names: {', '.join(_REGISTRY)} "
            "(see `segshield defenses`)"
        )
    entry = _REGISTRY[name]
    params: dict[str, Any] = {}
    for key, text in pairs:
        if key not in entry.params:
            valid = ", ".join(entry.params) or "(none)"
            raise ValueError(f"{name}: unknown parameter {key!r}; valid parameters: {valid}")
        if key in params:
            raise ValueError(f"{name}: parameter {key!r} given twice")
        params[key] = _parse_value(name, key, text, entry.params[key].kind)
    return name, params


def get_defense(spec: str | Defense) -> Defense:
    """Build a defence from a spec string (a :class:`Defense` is returned unchanged).

    Args:
        spec: e.g. ``"fr:pd=30,ac=5,gd=60"``, ``"jpeg:q=75"``, ``"bitdepth:bits=4"``,
            ``"median:k=3"``, ``"gaussian:sigma=1"``, ``"fd"``, ``"none"``,
            ``"fr:table=..."`` or ``"fr:file=table.json"``.

    Returns:
        The defence; ``get_defense(d.spec())`` rebuilds an equal one.

    Raises:
        TypeError: ``spec`` is neither a string nor a Defense.
        ValueError: unknown name or parameter (the valid ones are listed) or a bad value.
        FileNotFoundError: ``fr:file=PATH`` names a missing file.

    Example:
        >>> get_defense("jpeg:q=75").spec()
        'jpeg:q=75,gradient=bpda'
    """
    if isinstance(spec, Defense):
        return spec
    name, params = parse_spec(spec)
    return _REGISTRY[name].factory(**params)


def list_defenses() -> list[dict[str, Any]]:
    """Describe every registered defence.

    Returns:
        One dict per defence: ``name``, ``class``, ``summary``, ``params`` (key ->
        ``{"type", "default", "help"}``), ``gradient`` (default policy), ``gradients``
        (offered policies) and ``randomized``.

    Example:
        >>> [d["name"] for d in list_defenses()][:2]
        ['fr', 'jpeg']
    """
    out = []
    for name, e in _REGISTRY.items():
        out.append(
            {
                "name": name,
                "class": e.cls.__name__,
                "summary": e.summary,
                "params": {
                    k: {"type": p.kind.__name__, "default": p.default, "help": p.help}
                    for k, p in e.params.items()
                },
                "gradient": e.cls.gradients[0],
                "gradients": tuple(e.cls.gradients),
                "randomized": e.cls.randomized,
            }
        )
    return out
