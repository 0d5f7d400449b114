"""segshield's defences as MONAI transforms (optional extra ``segshield[monai]``).

Every defence of :mod:`segshield.defenses` is offered in MONAI's two forms, so that it
slots into a ``monai.transforms.Compose`` pipeline:

- array transforms take one channel-first image ``(C, H, W)`` (MONAI's convention, no
  batch dimension): :class:`DefenseTransform` for any defence spec, and one class per
  defence named after it: ``FrequencyRefinement``, ``FeatureDistillation``, ``Jpeg``,
  ``BitDepth``, ``Median``, ``Gaussian``;
- dictionary transforms apply it to the entries named by ``keys``: :class:`Defensed`,
  ``FrequencyRefinementd``, ``FeatureDistillationd``, ``Jpegd``, ``BitDepthd``,
  ``Mediand``, ``Gaussiand``.

Settings are the defence's spec settings as keywords (``FrequencyRefinementd(keys=
["image"], pd=30, ac=5, gd=60)``) or a spec string (``Defensed(keys=["image"],
defense="fr:pd=30")``). The output equals the plain defence on the image as a batch of
one, exactly, and has the input's type: a ``MetaTensor`` keeps its meta data (affine,
file name; no operation is recorded, the defences are not invertible), a tensor stays a
tensor on its device, a numpy array stays an array. Images are floats in ``[0, 1]``
(docs/ALGORITHMS.md §1): put ``ScaleIntensity(minv=0.0, maxv=1.0)`` before the defence.
The transforms are deterministic MONAI ``Transform`` instances, so a ``CacheDataset``
caches the defended images.

MONAI is imported on first use of a transform class, never by ``import segshield``;
without it, that access raises an ImportError naming the extra.

Example:
    >>> from monai.transforms import Compose, ScaleIntensityd  # doctest: +SKIP
    >>> from segshield.integrations.monai import FrequencyRefinementd  # doctest: +SKIP
    >>> pipeline = Compose(  # doctest: +SKIP
    ...     [ScaleIntensityd(keys="image"), FrequencyRefinementd(keys="image", pd=30)]
    ... )
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import torch

from segshield.defenses.base import Defense
from segshield.defenses.registry import DEFENSES
from segshield.models.monai_nets import require_monai

#: array-transform class name -> defence registry name (the dictionary form adds "d")
NAMED: dict[str, str] = {
    "FrequencyRefinement": "fr",
    "FeatureDistillation": "fd",
    "Jpeg": "jpeg",
    "BitDepth": "bitdepth",
    "Median": "median",
    "Gaussian": "gaussian",
}
#: the transform classes, built on MONAI's bases on first access (:func:`_classes`)
TRANSFORMS: tuple[str, ...] = (
    "DefenseTransform",
    "Defensed",
    *(name + suffix for name in NAMED for suffix in ("", "d")),
)
__all__ = [*TRANSFORMS, "NAMED", "TRANSFORMS", "defend_channel_first", "make_defense"]


def make_defense(defense: str | Defense, settings: Mapping[str, Any]) -> Defense:
    """The defence a transform applies: a spec string plus keyword settings, or a Defense.

    Args:
        defense: a spec (``"fr"``, ``"fr:pd=30"``) or a built :class:`Defense`.
        settings: keyword settings, taking precedence over the spec's.

    Returns:
        The defence.

    Raises:
        TypeError: settings given with a built Defense, or ``defense`` of another type.
        ValueError: unknown defence or setting (the valid ones are listed), a bad value.

    Example:
        >>> make_defense("fr:pd=30", {"gd": 50}).spec()[:20]
        'fr:pd=30,ac=5,gd=50,'
    """
    if isinstance(defense, Defense):
        if settings:
            raise TypeError(
                f"settings {', '.join(settings)}: not with a built {type(defense).__name__}; "
                "give them to the defence itself or pass a spec string"
            )
        return defense
    if not isinstance(defense, str):
        raise TypeError(
            f"defense: expected a spec string such as 'fr:pd=30' or a segshield Defense, "
            f"got {type(defense).__name__}"
        )
    return DEFENSES.build(defense, **settings)


def defend_channel_first(defense: Defense, image: torch.Tensor) -> torch.Tensor:
    """Apply a defence to one channel-first image, as a batch of one, without gradients.

    Args:
        defense: the defence.
        image: ``(C, H, W)`` float tensor in ``[0, 1]``.

    Shape:
        ``(C, H, W)`` to ``(C, H, W)``.

    Returns:
        ``defense(image[None])[0]``, a plain tensor of the image's dtype and device.

    Raises:
        TypeError: ``image`` is not a floating-point tensor.
        ValueError: ``image`` is not 3-D.

    Example:
        >>> from segshield.defenses import BitDepth
        >>> defend_channel_first(BitDepth(1), torch.tensor([[[0.2, 0.7]]])).tolist()
        [[[0.0, 1.0]]]
    """
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        kind = getattr(image, "dtype", type(image).__name__)
        raise TypeError(
            f"image: expected a float image in [0, 1], got {kind}; put "
            "ScaleIntensity(minv=0.0, maxv=1.0) before the defence"
        )
    if image.ndim != 3:
        raise ValueError(
            f"image: expected one channel-first image (C, H, W), got shape "
            f"{tuple(image.shape)}; for a batch (B, C, H, W) call the defence itself"
        )
    with torch.no_grad():
        return defense(image.unsqueeze(0))[0]


class _DefenseArray:
    """The array form: one ``(C, H, W)`` image (MetaTensor, tensor or numpy) in, same out."""

    #: the defence of a named class (None: the generic class takes ``defense``)
    fixed: ClassVar[str | None] = None
    dictionary: ClassVar[bool] = False

    def __init__(self, defense: str | Defense | None = None, **settings: Any) -> None:
        self.defense = _resolve(type(self), defense, settings)

    def __call__(self, img: Any) -> Any:
        from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

        out = defend_channel_first(self.defense, convert_to_tensor(img, track_meta=False))
        return convert_to_dst_type(out, dst=img)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.defense.spec()!r})"


class _DefenseDict:
    """The dictionary form: the array form on each entry named by ``keys``."""

    fixed: ClassVar[str | None] = None
    dictionary: ClassVar[bool] = True
    #: the generic array transform (set with the MONAI classes)
    array_class: ClassVar[type] = _DefenseArray

    def __init__(
        self,
        keys: Any,
        defense: str | Defense | None = None,
        allow_missing_keys: bool = False,
        **settings: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)  # MapTransform's
        self.defense = _resolve(type(self), defense, settings)
        self.transform = self.array_class(self.defense)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={list(self.keys)}, {self.defense.spec()!r})"


def _resolve(cls: type, defense: str | Defense | None, settings: dict[str, Any]) -> Defense:
    """The defence of a transform: the class's fixed one with settings, or ``defense``."""
    if cls.fixed is None:
        if defense is None:
            raise TypeError(f"{cls.__name__}: missing the defence, e.g. defense='fr:pd=30'")
        return make_defense(defense, settings)
    if defense is not None:
        generic = "Defensed" if cls.dictionary else "DefenseTransform"
        raise TypeError(
            f"{cls.__name__}: applies {cls.fixed!r}; give its settings as keywords "
            f"(see `segshield defenses`), or use {generic} for another defence"
        )
    return make_defense(cls.fixed, settings)


_DOC = """{what} as a MONAI {form} transform (:mod:`segshield.integrations.monai`).

{args}

Equal to the plain defence on the image as a batch of one; returns the input's type
(MetaTensor with its meta data, tensor, or numpy array).
"""
_ARRAY_ARGS = (
    "Args:\n    {head}**settings: the defence's spec settings as keywords (see `segshield "
    "defenses`).\n\nShape:\n    ``(C, H, W)`` float in ``[0, 1]`` to ``(C, H, W)``."
)
_DICT_ARGS = (
    "Args:\n    keys: the entries to defend (MONAI's ``KeysCollection``).\n    {head}"
    "allow_missing_keys: skip absent keys instead of raising KeyError. Default False.\n"
    "    **settings: the defence's spec settings as keywords (see `segshield defenses`)."
)


def _make(name: str, fixed: str | None, dictionary: bool, bases: tuple[type, ...]) -> type:
    what = "A segshield defence" if fixed is None else f"The ``{fixed}`` defence"
    head = (
        "" if fixed is not None else "defense: a spec string (``'fr:pd=30'``) or a Defense.\n    "
    )
    args = (_DICT_ARGS if dictionary else _ARRAY_ARGS).format(head=head)
    form = "dictionary" if dictionary else "array"
    attrs = {
        "fixed": fixed,
        "dictionary": dictionary,
        "__doc__": _DOC.format(what=what, form=form, args=args),
        "__module__": __name__,
        "__qualname__": name,
    }
    return type(name, bases, attrs)


@functools.cache
def _classes() -> dict[str, type]:
    """Build the transform classes on MONAI's bases (imports MONAI)."""
    monai = require_monai("segshield.integrations.monai")
    base, map_base = monai.transforms.Transform, monai.transforms.MapTransform
    backend = [monai.utils.TransformBackends.TORCH, monai.utils.TransformBackends.NUMPY]
    out: dict[str, type] = {}
    for array_name, fixed in [("DefenseTransform", None), *NAMED.items()]:
        dict_name = "Defensed" if fixed is None else array_name + "d"
        array_cls = _make(array_name, fixed, False, (_DefenseArray, base))
        dict_cls = _make(dict_name, fixed, True, (_DefenseDict, map_base))
        array_cls.backend = dict_cls.backend = backend
        out[array_name], out[dict_name] = array_cls, dict_cls
    for name in out:
        out[name].array_class = out["DefenseTransform"]
    return out


def __getattr__(name: str) -> Any:
    if name in TRANSFORMS:
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
