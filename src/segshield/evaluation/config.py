"""Evaluation settings: one dataclass, read from YAML (optional PyYAML), JSON or CLI flags.

An evaluation crosses models x datasets x attacks x defences (docs/ALGORITHMS.md §5). Attacks in
``attacks`` are computed once per (model, attack, sample) and reused by every defence;
attacks in ``adaptive`` are run through each defence (``segshield.attacks.Defended``:
BPDA or the smooth surrogate, EOT for randomised defences) and so are computed once per
defence. The attack ``none`` (:data:`NO_ATTACK`) asks for no attack: rows of clean and
defended clean (benign) scores only, under attack ``none``. A model without gradients (an
ONNX file, ``supports_gradients`` False) gets these rows whatever the attacks, and the
attacks are skipped on it (the harness logs one warning and records them in the manifest).
``worst_case`` adds, per sample, the worst case over the attacks run
(:mod:`~segshield.evaluation.worst_case`); ``suite`` runs a named attack suite
(:mod:`~segshield.evaluation.suites`) at the budget ``eps`` and turns the worst case on.
A spec in ``attacks`` or ``adaptive`` may be a sweep, ``pgd:eps={1,2,4,8,16}/255``
(:mod:`segshield.attacks.sweep`): it stands for one attack per value, each stored under
its expanded spec. ``attack_precision``, ``channels_last`` and ``compile`` choose faster
attack arithmetic (:mod:`segshield.attacks.precision`); float32 is the default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segshield._checks import check_choice, check_number
from segshield.attacks.sweep import expand_sweeps
from segshield.choices import PRECISIONS, SPLITS, SUBSET_ORDERS
from segshield.defenses.tables import PAPER_SPEC
from segshield.evaluation.suites import DEFAULT_EPS, check_eps, suite_specs

__all__ = ["EvalConfig", "load_config", "NO_ATTACK"]

#: The attack spec that means no attack: clean and benign rows only (attack column ``none``).
NO_ATTACK = "none"
#: Settings added later, left out of :meth:`EvalConfig.digest` at these values, so a folder
#: written before they existed resumes.
_LATER_DEFAULTS = {
    "worst_case": False,
    "suite": None,
    "eps": None,
    "attack_precision": "fp32",
    "channels_last": False,
    "compile": False,
    "subset": "first",
}


@dataclass
class EvalConfig:
    """What to evaluate and how (docs/ALGORITHMS.md §5 protocol).

    Args:
        models: checkpoint paths for ``segshield.models.load``, or model files for
            ``segshield.models.wrap`` (``.onnx``, TorchScript ``.ts``/``.torchscript``;
            see :func:`segshield.evaluation.harness.load_model`); at least one.
        datasets: data specs ``KIND[:PATH]`` for ``segshield.data.load_dataset``.
        attacks: attack specs for ``segshield.attacks.get_attack`` run on the bare
            model, and/or ``none`` (:data:`NO_ATTACK`: clean and benign rows only).
            Default ``["asma"]`` (none with a ``suite``: its attacks). Models without
            gradients skip every attack and get the ``none`` rows. A sweep
            (``pgd:eps={1,2,4}/255``, :func:`segshield.attacks.sweep.expand_sweep`) is
            expanded here into one spec per value.
        adaptive: attack specs run through each defence (adaptive attacks; ``none`` is
            not one; sweeps expanded as in ``attacks``). Default none.
        defenses: defence specs for ``segshield.defenses.get_defense``; ``none``
            (no defence, identity) is always added. Default the paper's FR table.
        target: target-mask kind for ``segshield.attacks.make_targets`` (the papers use
            ``"other-gt"``: another image's ground truth), or ``None`` for untargeted
            attacks. Default ``"other-gt"``.
        size: image side passed to the loader, or ``None`` for the model's input size.
        split: dataset split, one of ``train, val, test, all``. Default ``"val"``.
        limit: at most this many samples per dataset (>= 1), or ``None`` for all.
        subset: which ``limit`` samples: ``"first"`` in file order, or ``"random"``, a
            subset drawn with ``seed`` (the command line's ``--limit``; ``--first`` gives
            ``"first"``); the chosen names go to the manifest's ``samples``
            (:mod:`~segshield.evaluation.samples`). Default ``"first"``.
        n: passed to ``load_dataset(n=)``: phantoms: images generated before the split
            (must match the training run so the splits agree); real data: the first
            ``n`` items of the split. ``None``: the loader's default.
        seed: seed of targets, attacks and splits (>= 0). Default 0.
        batch_size: samples per batch (>= 1). Default 8.
        png_roundtrip: the FR paper's pipeline: adversarial images are quantised to
            8 bits (rounded, as when saved as PNG and read back) before the defence.
            Default ``True``.
        examples: example panels kept per (model, dataset, attack, defence) for the
            report (>= 0). Default 2.
        glaucoma_threshold: CDR at or above which the glaucoma call is positive, in
            (0, 1). Default 0.6 (docs/ALGORITHMS.md §5).
        downstream: add diagnosis columns (CDR error, flipped calls, lesion-area
            error) where the dataset's regions allow. Default ``True``.
        eot_samples: forward passes averaged by adaptive attacks on randomised
            defences (EOT, Athalye et al., ICML 2018), >= 1. Default 10.
        classifiers: classifier checkpoints (``segshield.models.load``, task
            ``classify``) evaluated on every dataset, scored by accuracy: clean,
            attacked, defended and defended-clean. Default none.
        classifier_attacks: attack specs for the classifiers (FGSM, PGD, CW). Default
            FGSM and a 10-step PGD, both L-inf eps 8/255.
        classifier_adaptive: also run the classifier attacks through each defence.
            Default ``True``.
        device: torch device string. Default ``"cpu"``.
        pairing: ``"cross"`` evaluates every model on every dataset; ``"zip"`` evaluates
            ``models[i]`` on ``datasets[i]`` only (each model on its own data; the lists
            must have the same length). Default ``"cross"``.
        worst_case: also store, per (model, dataset, defence, sample), the worst case
            over the attacks run, adaptive ones included (rows of attack
            ``worst-case``, the winning attack in ``worst_attack``;
            :func:`~segshield.evaluation.worst_case.worst_case_rows`). Default ``False``.
        suite: a named attack suite (:data:`~segshield.evaluation.suites.SUITES`, e.g.
            ``"standard"``): its attacks come first in ``attacks`` and ``adaptive``
            (before any listed there) and ``worst_case`` is turned on. Default none.
        eps: L-inf budget of the suite's attacks, a number or fraction such as
            ``"4/255"`` (only with ``suite``). Default ``8/255``.
        attack_precision: arithmetic of the model inside the attacks: ``"fp32"`` (the
            published algorithm) or ``"bf16"`` (autocast;
            :func:`segshield.attacks.precision.fast_forward`). Scoring stays float32;
            the classifier attacks always run float32. Default ``"fp32"``.
        channels_last: run the attacks' model passes channels-last (a copy of the
            model's weights). Default ``False``.
        compile: ``torch.compile`` the model inside the attacks. Default ``False``.

    Raises:
        ValueError: empty model or dataset list, a bad split or a number out of range.
        TypeError: a setting of the wrong type.

    Example:
        >>> cfg = EvalConfig(models=["m.safetensors"], datasets=["phantom-derm"], limit=4)
        >>> cfg.split, cfg.defenses[-1]
        ('val', 'none')
        >>> EvalConfig(models=["m.onnx"], datasets=["phantom-derm"], attacks=["none"]).attacks
        ['none']
    """

    models: list[str]
    datasets: list[str]
    attacks: list[str] | None = None
    adaptive: list[str] = field(default_factory=list)
    defenses: list[str] = field(default_factory=lambda: [PAPER_SPEC])
    target: str | None = "other-gt"
    size: int | None = None
    split: str = "val"
    limit: int | None = None
    subset: str = "first"
    n: int | None = None
    seed: int = 0
    batch_size: int = 8
    png_roundtrip: bool = True
    examples: int = 2
    glaucoma_threshold: float = 0.6
    downstream: bool = True
    eot_samples: int = 10
    classifiers: list[str] = field(default_factory=list)
    classifier_attacks: list[str] = field(
        default_factory=lambda: ["fgsm:eps=0.0314", "pgd:eps=0.0314,alpha=0.0078,steps=10"]
    )
    classifier_adaptive: bool = True
    device: str = "cpu"
    pairing: str = "cross"
    worst_case: bool = False
    suite: str | None = None
    eps: str | None = None
    attack_precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        self._expand_suite()
        lists = ("models", "datasets", "attacks", "adaptive", "defenses", "classifiers")
        for name in (*lists, "classifier_attacks"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{name}: expected a list of strings, got {value!r}")
            setattr(self, name, [str(v).strip() for v in value])
        self.attacks = expand_sweeps(self.attacks, "attacks")
        self.adaptive = expand_sweeps(self.adaptive, "adaptive")
        if not self.models and not self.classifiers:
            raise ValueError("models: expected at least one checkpoint, got none; pass --model")
        if not self.datasets:
            raise ValueError("datasets: expected at least one data spec, got none; pass --data")
        if self.models and not self.attacks and not self.adaptive:
            raise ValueError(
                "attacks: expected at least one attack, got none; pass --attack (or "
                f"--attack {NO_ATTACK} for clean and benign scores only)"
            )
        if NO_ATTACK in self.adaptive:
            raise ValueError(
                f"adaptive: {NO_ATTACK!r} is not an attack to run through a defence; pass "
                f"--attack {NO_ATTACK} for clean and benign scores only"
            )
        if "none" not in self.defenses:
            self.defenses.append("none")
        check_choice("split", self.split, SPLITS)
        check_choice("pairing", self.pairing, ("cross", "zip"))
        check_choice("subset", self.subset, SUBSET_ORDERS)
        if self.pairing == "zip" and len(self.models) != len(self.datasets):
            raise ValueError(
                f"pairing: 'zip' needs as many datasets as models, got {len(self.models)} "
                f"model(s) and {len(self.datasets)} dataset(s); use pairing 'cross'"
            )
        if self.size is not None:
            check_number("size", self.size, low=8, integer=True)
        if self.limit is not None:
            check_number("limit", self.limit, low=1, integer=True)
        if self.n is not None:
            check_number("n", self.n, low=1, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("batch_size", self.batch_size, low=1, integer=True)
        check_number("examples", self.examples, low=0, integer=True)
        check_number("eot_samples", self.eot_samples, low=1, integer=True)
        check_number(
            "glaucoma_threshold",
            self.glaucoma_threshold,
            low=0,
            high=1,
            low_inclusive=False,
            high_inclusive=False,
        )
        if self.classifiers and not self.classifier_attacks:
            raise ValueError(
                "classifier_attacks: expected at least one attack for the classifiers, got none"
            )
        if self.worst_case and self.models and set(self.attacks + self.adaptive) <= {NO_ATTACK}:
            raise ValueError(
                "worst_case: needs at least one attack to take the worst case over, got "
                f"only {NO_ATTACK!r}; pass --attack SPEC (or --suite standard)"
            )
        check_choice("attack_precision", self.attack_precision, PRECISIONS)
        bools = ("png_roundtrip", "downstream", "classifier_adaptive", "worst_case")
        for name in (*bools, "channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if self.target is not None and not isinstance(self.target, str):
            raise TypeError(f"target: expected a target kind or null, got {self.target!r}")

    def _expand_suite(self) -> None:
        """Put the suite's specs first in ``attacks``/``adaptive``; default ``attacks``."""
        if self.suite is None:
            if self.eps is not None:
                raise ValueError(
                    f"eps: sets the budget of a suite, got {self.eps!r} without one; pass "
                    "--suite standard, or give eps in each attack spec (pgd:eps=4/255)"
                )
            if self.attacks is None:
                self.attacks = ["asma"]
            return
        self.eps = check_eps(DEFAULT_EPS if self.eps is None else self.eps)
        plain, adaptive = suite_specs(self.suite, self.eps)
        for name, first in (("attacks", plain), ("adaptive", adaptive)):
            given = getattr(self, name) or []
            given = [given] if isinstance(given, str) else given
            if isinstance(given, (list, tuple)):  # else the type check below says so
                setattr(self, name, [*first, *(s for s in given if s not in first)])
        self.worst_case = True

    def attack_list(self) -> list[tuple[str, bool, Any]]:
        """``(spec, adaptive, attack)`` of every attack to run, in order (``none`` left out).

        With ``attack_precision``, ``channels_last`` or ``compile`` set, each attack runs
        its model passes that way (:class:`segshield.attacks.precision.FastAttack`).
        """
        from segshield.attacks import get_attack
        from segshield.attacks.precision import fast_attack

        speed = {
            "precision": self.attack_precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
        }
        plain = [(s, False) for s in self.attacks if s != NO_ATTACK]
        adaptive = [(s, True) for s in self.adaptive]
        return [(s, ad, fast_attack(get_attack(s), **speed)) for s, ad in plain + adaptive]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary of every setting."""
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short SHA-256 of the settings, identifying a run for resumption."""
        data = {
            k: v
            for k, v in self.to_dict().items()
            if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]
        }
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        """Build from a dictionary; unknown keys are an error that lists the valid ones.

        Raises:
            ValueError: unknown keys or missing required ones.
        """
        if not isinstance(data, dict):
            raise TypeError(f"config: expected a mapping of settings, got {type(data).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(
                f"config: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        missing = [k for k in ("models", "datasets") if k not in data]
        if missing and not (missing == ["models"] and data.get("classifiers")):
            raise ValueError(f"config: missing required setting(s) {', '.join(missing)}")
        return cls(**{"models": [], **data})


def load_config(path: str | Path, **overrides: Any) -> EvalConfig:
    """Read an :class:`EvalConfig` from a YAML (needs PyYAML) or JSON file.

    Args:
        path: ``.yaml``/``.yml`` or ``.json`` file.
        **overrides: settings that replace the file's (``None`` values are ignored).

    Returns:
        The validated configuration.

    Raises:
        FileNotFoundError: no such file.
        ImportError: a YAML file without PyYAML installed (``pip install segshield[yaml]``).
        ValueError: unreadable content or bad settings.

    Example:
        >>> import tempfile, json, os
        >>> p = os.path.join(tempfile.mkdtemp(), "exp.json")
        >>> _ = open(p, "w").write(json.dumps({"models": ["m"], "datasets": ["phantom-derm"]}))
        >>> load_config(p, limit=3).limit
        3
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config: {path}: no such file; check the path")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ImportError(
                f"config: {path} is YAML but PyYAML is not installed; "
                "pip install 'segshield[yaml]' or write the config as JSON"
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"config: {path}: invalid YAML ({exc})") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config: {path}: invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config: {path}: expected a mapping of settings at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return EvalConfig.from_dict(data)
