"""Registry of defences: spec strings ``"name:key=value,..."`` to instances, and back.

Reference: ARCHITECTURE.md "Defences". A :class:`segshield._registry.Registry`: each
entry is a class or factory whose signature declares the parameters (type, default);
values follow the one spec grammar of :mod:`segshield._spec` (fractions included:
``fr:pd=60/2`` is ``pd=30``), never evaluated. ``Defense.spec()`` produces strings this
module parses.

Spec grammar: ``NAME`` or ``NAME:KEY=VALUE[,KEY=VALUE...]``; booleans are
``true/false``; FR's custom table is ``table=s0/s1/.../s63`` (row-major, 64 steps per
channel) or ``file=PATH`` (a JSON file from ``FrequencyRefinement.to_file``; the path
must not contain ``,``). ``fr:space=ycbcr`` runs FR on JPEG's luma and chroma planes: without band
steps, ``table=`` or ``file=`` it uses the IJG tables (``luma=ijg,chroma=ijg``), so
``fr:space=ycbcr,quality=50,subsample=420`` is JPEG q50 without entropy coding.
"""

from __future__ import annotations

from typing import Any

from segshield._registry import Registry, signature_params
from segshield.defenses.base import Defense
from segshield.defenses.bitdepth import BitDepth
from segshield.defenses.feature_distillation import FeatureDistillation
from segshield.defenses.fr import FrequencyRefinement, _parse_dtype, parse_table_string
from segshield.defenses.gaussian import Gaussian
from segshield.defenses.identity import Identity
from segshield.defenses.jpeg import Jpeg
from segshield.defenses.median import Median

__all__ = ["DEFENSES", "get_defense", "list_defenses", "parse_spec"]

#: The defence registry (``segshield defenses`` lists it).
DEFENSES: Registry[Defense] = Registry(
    "defense",
    hint=" (see `segshield defenses`)",
    example="fr:pd=30,ac=5,gd=60",
)


def _gradient_help(cls: type[Defense]) -> str:
    return "gradient policy: " + " | ".join(cls.gradients)


def _defaults(cls: type[Defense]) -> dict[str, Any]:
    """The constructor defaults of a defence (the registry's defaults are the class's)."""
    return {name: p.default for name, p in signature_params(cls).items()}


_FR = _defaults(FrequencyRefinement)
_JPEG = _defaults(Jpeg)


def _fr_params(
    pd: float = _FR["pd"],
    ac: float = _FR["ac"],
    gd: float = _FR["gd"],
    pd_size: int = _FR["pd_size"],
    ac_size: int = _FR["ac_size"],
    quality: int | None = _FR["quality"],
    pad: str = _FR["pad"],
    clip: bool = _FR["clip"],
    gradient: str = _FR["gradient"],
    dtype: str = "auto",
    table: str | None = None,
    file: str | None = None,
    space: str | None = None,
    subsample: str | None = None,
    luma: str | None = None,
    chroma: str | None = None,
) -> None:
    """Frequency Refinement (Liu et al. 2020)"""


def _fr(**kw: Any) -> FrequencyRefinement:
    """FR from the keys given in the spec (:func:`_fr_params` declares them): the
    table-based forms must know which settings were given, not their defaults."""
    table, path = kw.pop("table", None), kw.pop("file", None)
    for key in ("space", "subsample"):  # None: the class default (rgb, 444), as RGB specs
        if kw.get(key, "") is None:
            del kw[key]
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
    if kw.get("space") == "ycbcr" and not band_keys and table is None and path is None:
        # JPEG's tables unless bands or a table are given: fr:space=ycbcr,quality=50
        kw.setdefault("luma", "ijg")
        kw.setdefault("chroma", "ijg")
    if path is not None:
        return FrequencyRefinement.from_file(path, **kw)
    if table is not None:
        return FrequencyRefinement.from_table(parse_table_string(table), **kw)
    return FrequencyRefinement(**kw)


def _jpeg(q: int = _JPEG["quality"], gradient: str = _JPEG["gradient"]) -> Jpeg:
    """JPEG through libjpeg/Pillow (YCbCr 4:2:0 for RGB)"""
    return Jpeg(q, gradient)


DEFENSES.register(
    "fr",
    _fr,
    params_from=_fr_params,
    builds=FrequencyRefinement,
    help={
        "pd": "priority-defence step (DC and lowest AC terms)",
        "ac": "accuracy-compensation step",
        "gd": "global-defence step (high frequencies)",
        "pd_size": "PD band: u, v < pd_size",
        "ac_size": "AC band: u, v < ac_size",
        "quality": "JPEG-style quality scaling of the table (1..100)",
        "pad": "padding to multiples of 8: edge | zero (paper-faithful)",
        "clip": "clip the output to [0, 1]",
        "gradient": _gradient_help(FrequencyRefinement),
        "dtype": "arithmetic: auto | float32 | float64",
        "table": "custom table: 64 (or 64*C) steps s0/s1/... row-major",
        "file": "custom table: JSON file from FrequencyRefinement.to_file",
        "space": "colour space: rgb (the paper's; default) | ycbcr (JPEG's luma and chroma)",
        "subsample": "ycbcr: chroma 444 (full; default) | 420 (2x2, as JPEG)",
        "luma": "ycbcr: Y table, ijg or 64 steps (default ijg without bands or table)",
        "chroma": "ycbcr: Cb, Cr table, ijg or 64 steps (default ijg without bands or table)",
    },
)
DEFENSES.register(
    "jpeg",
    _jpeg,
    builds=Jpeg,
    help={"q": "libjpeg quality 1..100", "gradient": _gradient_help(Jpeg)},
)
DEFENSES.register(
    "fd",
    FeatureDistillation,
    summary="Feature Distillation (Liu et al. 2019)",
    help={
        "low": "step in the low band",
        "high": "step elsewhere",
        "low_size": "low band: u, v < low_size",
        "pad": "edge | zero",
        "clip": "clip the output to [0, 1]",
        "gradient": _gradient_help(FeatureDistillation),
    },
)
DEFENSES.register(
    "bitdepth",
    BitDepth,
    summary="bit-depth reduction (Xu et al. 2018)",
    help={"bits": "bits per channel 1..16", "gradient": _gradient_help(BitDepth)},
)
DEFENSES.register(
    "median",
    Median,
    summary="median filter k x k",
    help={"k": "odd window size 1..31", "gradient": _gradient_help(Median)},
)
DEFENSES.register(
    "gaussian",
    Gaussian,
    summary="Gaussian blur",
    help={"sigma": "blur sigma in pixels", "gradient": _gradient_help(Gaussian)},
)
DEFENSES.register("none", Identity, summary="no defence (identity)")


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
        >>> parse_spec("fr:pd=60/2")
        ('fr', {'pd': 30.0})
    """
    return DEFENSES.parse(spec)


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
    return DEFENSES.build(spec)


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
    for d in DEFENSES.describe():
        cls = DEFENSES.entry(d["name"]).builds
        out.append(
            {
                "name": d["name"],
                "class": cls.__name__,
                "summary": d["summary"],
                "params": d["params"],
                "gradient": cls.gradients[0],
                "gradients": tuple(cls.gradients),
                "randomized": cls.randomized,
            }
        )
    return out
