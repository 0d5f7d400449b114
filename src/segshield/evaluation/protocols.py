"""The protocols of ``segshield reproduce``, as data (docs/ALGORITHMS.md §4b).

- ``fr-paper`` (the default): the FR authors' setting (Liu et al., MICCAI 2020):
  ``resnet_fcn`` (ResNet-50 encoder, transposed-convolution decoder) at 224x224, inputs
  scaled to [-1, 1], one sigmoid channel for binary masks; ASMA with tau = 1e-7,
  beta = 1e-6 and 1001 iterations towards another image's ground truth; the
  adversarial image saved as 8-bit PNG and read back; FR PD 30, AC 5, GD 60 with zero
  padding against JPEG q 50/75/90, Feature Distillation, bit depth 4 and median 3; an
  adaptive BPDA-PGD through each defence; every evaluation image.
- ``quick``: the settings ``reproduce`` had before the presets (U-Net width 16 at
  128x128, ASMA 300 steps with tau = 1e-5, beta = 1e-4, 100 images), for a CPU check.

:func:`resolve` applies the command line's overrides to a preset;
:func:`resolved_config` is what ``--print-config`` prints; :func:`evaluation_split`
says which split is evaluated (ISIC: the official test folder when present).

Example:
    >>> PROTOCOLS["fr-paper"].attack
    'asma:steps=1001,tau=1e-07,beta=1e-06'
    >>> resolve("quick", size=64).size
    64
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segshield._checks import check_choice, check_number
from segshield.choices import REPRODUCE_TARGETS, SUBSET_ORDERS

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "REPRODUCE_COLUMNS",
    "evaluation_split",
    "resolve",
    "resolved_config",
]

#: Columns ``segshield reproduce`` prints: the paper's recovered IoU beside Dice.
REPRODUCE_COLUMNS = (
    "clean_dice",
    "clean_iou",
    "benign_loss",
    "attack_target_iou",
    "attack_success_rate",
    "attacked_dice",
    "recovered_dice",
    "recovered_iou",
    "efficiency",
    "l2",
    "linf",
)
#: Integer settings and their lowest values (checked in this order).
_LOWEST = {"size": 16, "width": 1, "epochs": 1, "batch_size": 1, "seed": 0}


@dataclass(frozen=True)
class Protocol:
    """One protocol of ``segshield reproduce``: model, sizes, attacks, defences, targets.

    Args:
        name: the preset's name (``--protocol``).
        model: architecture for ``segshield.models.build_model``; normalisation
            mean = std = 0.5 (inputs in [-1, 1]), one sigmoid channel for binary masks
            (K softmax channels for K >= 3 classes, e.g. fundus disc and cup).
        width: the model's width (ResNet base width; 64 = the ImageNet ResNet).
        size: image side, >= 16.
        epochs: training epochs (the best epoch on the validation split is kept).
        attack: the attack on the bare model (an ASMA spec).
        adaptive: the attack run through each defence (BPDA for FR and JPEG).
        defenses: defence specs; ``none`` is the undefended row.
        target: ``"other-gt"`` (a seeded derangement) or ``"last-gt"`` (the last
            image's mask, the FR authors' choice).
        png_roundtrip: round adversarial images to 8 bits before the defence.
        limit: evaluated images (a seeded random subset), or ``None`` for all.
        subset: ``"random"`` or ``"first"`` (file order), when ``limit`` is set.
        batch_size: evaluation (attack) batch size.
        seed: seed of training, subset, targets and attacks.
        n_train: ``load_dataset(n=)``: the first ``n`` images of each split, or ``None``.
        init: a ``.safetensors`` file of encoder weights, or ``None`` (from scratch).

    Raises:
        ValueError, TypeError: a setting out of range or of the wrong type.

    Example:
        >>> dataclasses.replace(PROTOCOLS["fr-paper"], target="last-gt").target
        'last-gt'
    """

    name: str
    model: str
    width: int
    size: int
    epochs: int
    attack: str
    adaptive: str
    defenses: tuple[str, ...]
    target: str = "other-gt"
    png_roundtrip: bool = True
    limit: int | None = None
    subset: str = "random"
    batch_size: int = 8
    seed: int = 0
    n_train: int | None = None
    init: str | None = None

    def __post_init__(self) -> None:
        for key, low in _LOWEST.items():
            check_number(key, getattr(self, key), low=low, integer=True)
        for key in ("limit", "n_train"):
            if getattr(self, key) is not None:
                check_number(key, getattr(self, key), low=2 if key == "limit" else 4, integer=True)
        check_choice("target", self.target, REPRODUCE_TARGETS)
        check_choice("subset", self.subset, SUBSET_ORDERS)
        if not isinstance(self.png_roundtrip, bool):
            raise TypeError(f"png_roundtrip: expected true or false, got {self.png_roundtrip!r}")
        if not self.defenses or not all(isinstance(d, str) for d in self.defenses):
            raise TypeError(f"defenses: expected defence specs, got {self.defenses!r}")


_BASELINES = ("jpeg:q=50", "jpeg:q=75", "jpeg:q=90", "fd", "bitdepth:bits=4", "median:k=3")

#: The presets (docs/ALGORITHMS.md §4b); ``tests/test_protocols.py`` checks them
#: against the documented values.
PROTOCOLS: dict[str, Protocol] = {
    "fr-paper": Protocol(
        name="fr-paper",
        model="resnet_fcn",
        width=64,
        size=224,
        epochs=20,
        attack="asma:steps=1001,tau=1e-07,beta=1e-06",
        adaptive="pgd:eps=8/255,alpha=2/255,steps=20",
        defenses=("fr:pd=30,ac=5,gd=60,pad=zero", *_BASELINES, "none"),
        batch_size=32,
    ),
    "quick": Protocol(
        name="quick",
        model="unet",
        width=16,
        size=128,
        epochs=20,
        attack="asma:steps=300,tau=1e-05,beta=0.0001",
        adaptive="pgd:eps=0.0314,alpha=0.0078,steps=10",
        defenses=("fr:pd=30,ac=5,gd=60", *_BASELINES, "none"),
        limit=100,
        subset="first",
    ),
}


def resolve(name: str, **overrides: Any) -> Protocol:
    """A preset with the given settings replaced (``None`` values keep the preset's).

    Args:
        name: one of :data:`PROTOCOLS`.
        **overrides: fields of :class:`Protocol`; ``defenses`` as a list or tuple.

    Returns:
        The resolved, validated protocol.

    Raises:
        ValueError: an unknown preset or setting (the valid ones are listed), or a
            value out of range.

    Example:
        >>> resolve("fr-paper", limit=48).limit, resolve("fr-paper").limit is None
        (48, True)
    """
    check_choice("protocol", name, PROTOCOLS)
    fields = [f.name for f in dataclasses.fields(Protocol) if f.name != "name"]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"protocol: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(fields)}"
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    if "defenses" in given:
        given["defenses"] = tuple(given["defenses"])
    return dataclasses.replace(PROTOCOLS[name], **given)


def evaluation_split(data_spec: str) -> str:
    """The split ``reproduce`` evaluates: ISIC's official test folder when present, else val.

    The model is trained on ``train`` and its best epoch chosen on ``val``; an ISIC root
    with a ``*_Test_*`` folder pair is evaluated on it (the official held-out images),
    every other data set on ``val``.

    Example:
        >>> evaluation_split("origa:/data/origa")
        'val'
    """
    from segshield.data.isic import find_split_folders
    from segshield.data.registry import parse_spec

    kind, root = parse_spec(data_spec)
    if kind == "isic" and root is not None and root.is_dir() and "test" in find_split_folders(root):
        return "test"
    return "val"


def _outputs(data_spec: str) -> str:
    from segshield.data.registry import kind_classes, parse_spec

    names = kind_classes(parse_spec(data_spec)[0])
    if names is None:
        return "inferred from the masks: 1 sigmoid channel for 2 classes, else K softmax"
    if len(names) == 2:
        return "1 sigmoid channel"
    return f"{len(names)} softmax channels ({', '.join(names)})"


def resolved_config(protocol: Protocol, data_spec: str) -> dict[str, Any]:
    """The resolved settings as plain JSON (``segshield reproduce --print-config``).

    Keys: ``protocol``, ``data``, ``model``, ``size``, ``attack``, ``adaptive``,
    ``defenses``, ``targets``, ``png_roundtrip``, ``splits``, ``evaluated``,
    ``training``, ``seed``, ``batch_size``.

    Raises:
        ValueError: a bad data spec.

    Example:
        >>> cfg = resolved_config(PROTOCOLS["fr-paper"], "origa:/data/origa")
        >>> cfg["model"]["name"], cfg["size"], cfg["splits"]["evaluate"]
        ('resnet_fcn', 224, 'val')
    """
    p = protocol
    init = "trained from scratch" if p.init is None else f"encoder from {Path(p.init)}"
    return {
        "protocol": p.name,
        "data": data_spec,
        "model": {
            "name": p.model,
            "width": p.width,
            "normalisation": "[-1, 1] (mean 0.5, std 0.5)",
            "outputs": _outputs(data_spec),
            "encoder": init,
        },
        "size": p.size,
        "attack": p.attack,
        "adaptive": p.adaptive,
        "defenses": list(p.defenses),
        "targets": p.target,
        "png_roundtrip": p.png_roundtrip,
        "splits": {"train": "train", "select": "val", "evaluate": evaluation_split(data_spec)},
        "evaluated": "all" if p.limit is None else {"limit": p.limit, "subset": p.subset},
        "training": {"epochs": p.epochs, "n_train": p.n_train},
        "seed": p.seed,
        "batch_size": p.batch_size,
    }
