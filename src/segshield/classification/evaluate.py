"""Classifier accuracy clean, attacked and defended: tidy rows for the evaluation harness.

Protocol (issue 7, following the FR paper's classification experiment, Liu et al.,
MICCAI 2020): each batch is classified clean; each attack (FGSM, PGD, CW, ...) attacks
the undefended classifier (untargeted, with the true labels); the adversarial images
are rounded to the 8-bit grid (the paper's PNG round trip, ``png_roundtrip=True``);
then every defence is applied before the classifier. The defence is also applied to
the clean image (benign accuracy loss). With ``adaptive=True`` each attack instead
attacks ``Defended(model, defence)`` (BPDA / surrogate gradients, EOT), once per
defence; SPEC §4: a defence evaluation without an adaptive attack is incomplete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from segshield._checks import check_choice, check_number
from segshield._version import __version__
from segshield.classification.labels import KIND_TASK, TASKS, item_label, task_for_kind
from segshield.classification.training import _batch, _predict

__all__ = ["evaluate_classifier"]


def _resolve_attacks(attacks: Sequence[Any]) -> list[Any]:
    from segshield.attacks import Attack, get_attack

    out = []
    for a in attacks:
        atk = get_attack(a) if isinstance(a, str) else a
        if not isinstance(atk, Attack):
            raise TypeError(
                f"attacks: expected attack specs (e.g. 'pgd:eps=8/255') or Attack objects, "
                f"got {type(a).__name__}"
            )
        if not atk.supports_classifiers:
            raise ValueError(
                f"attacks: {atk.name} attacks segmentation models only; for classifiers "
                "use fgsm, pgd or cw"
            )
        out.append(atk)
    return out


def _resolve_defenses(defenses: Sequence[Any]) -> list[Any]:
    from segshield.defenses import Defense, get_defense

    out = []
    for d in defenses:
        if not isinstance(d, (str, Defense)):
            raise TypeError(
                f"defenses: expected defence specs (e.g. 'fr', 'jpeg:q=75', 'none') or "
                f"Defense objects, got {type(d).__name__}"
            )
        out.append(get_defense(d))
    return out


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255) / 255


def evaluate_classifier(
    model: torch.nn.Module,
    dataset: Sequence[Mapping[str, Any]],
    attacks: Sequence[Any],
    defenses: Sequence[Any],
    *,
    seed: int = 0,
    batch_size: int = 8,
    threshold: float = 0.6,
    adaptive: bool = False,
    png_roundtrip: bool = True,
    model_name: str | None = None,
    task: str | None = None,
) -> list[dict]:
    """Classify each item clean, attacked, defended and defended-clean; one row per case.

    Paper: issue 7 (FR evaluated on classifiers, Liu et al., MICCAI 2020); CW (Carlini
    & Wagner 2017), FGSM and PGD from :mod:`segshield.attacks`; FR and the baselines
    from :mod:`segshield.defenses`.

    Args:
        model: classifier taking ``[0, 1]`` images and returning ``(B, K)`` logits, e.g.
            from :func:`load_classifier`; put in eval mode here.
        dataset: indexable items with ``"image"``, ``"name"`` and the label source
            (``"cdr"``/``"mask"`` for glaucoma, ``"malignant"`` for malignancy); all
            images of one size.
        attacks: attack specs (``"pgd:eps=8/255"``) or ``Attack`` objects that support
            classifiers (``CarliniWagnerL2`` until ``"cw"`` is registered).
        defenses: defence specs (``"fr"``, ``"jpeg:q=75"``, ``"none"``) or ``Defense``
            objects. Include ``"none"`` for the undefended row.
        seed: seed of the attacks' and defences' randomness (each batch runs under its
            own seeded, forked RNG, so results do not depend on earlier calls), >= 0.
            Default 0.
        batch_size: items per batch, >= 1. Default 8.
        threshold: glaucoma CDR threshold for the labels, in ``[0, 1]``. Default 0.6.
        adaptive: attack ``Defended(model, defence)`` per defence instead of the bare
            model. Default False.
        png_roundtrip: round adversarial images to the 8-bit grid before classifying
            and defending. Default True.
        model_name: value of the ``model`` column. Default the model's
            ``config["architecture"]`` (or its class name).
        task: ``"glaucoma"`` or ``"malignancy"``. Default: the model's
            ``config["label_task"]`` (set by :func:`fit_classifier`), else the task of
            ``dataset.kind``.

    Returns:
        One dict per sample x attack x defence with ``model``, ``dataset``, ``sample``,
        ``index``, ``task``, ``label``, ``attack`` (spec), ``adaptive``, ``defense``
        (spec), ``clean_pred``/``clean_correct``, ``attacked_pred``/``attacked_correct``
        (undefended model on the adversarial image), ``defended_pred``/
        ``defended_correct`` (defence then model on the adversarial image, "recovered"),
        ``defended_clean_pred``/``defended_clean_correct``, ``l2``, ``linf``, ``steps``,
        ``attack_success`` (of the attack on the model it attacked), ``config`` (JSON
        text of the attack settings and protocol), ``seed``, ``version``.

    Raises:
        ValueError: empty attack/defence lists or data set, a segmentation-only attack,
            a data set without labels or labelled for another task, or a setting out of
            range.
        TypeError: attacks or defences of the wrong type.

    Example:
        >>> from segshield.classification import build_classifier
        >>> m = build_classifier("cnn", width=2, depth=1)
        >>> ds = [{"image": torch.rand(3, 8, 8), "name": "a", "malignant": 1}]
        >>> rows = evaluate_classifier(m, ds, ["fgsm"], ["none"], task="malignancy")
        >>> len(rows), rows[0]["defense"], rows[0]["label"]
        (1, 'none', 1)
    """
    from segshield.attacks import Defended

    check_number("seed", seed, low=0, integer=True)
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("threshold", threshold, low=0.0, high=1.0)
    for flag, value in (("adaptive", adaptive), ("png_roundtrip", png_roundtrip)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag}: expected True or False, got {value!r}")
    if not attacks:
        raise ValueError("attacks: expected at least one attack, got none; e.g. ['pgd']")
    if not defenses:
        raise ValueError("defenses: expected at least one defence, got none; e.g. ['none']")
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one item, got an empty data set")
    atks = _resolve_attacks(attacks)
    defs = _resolve_defenses(defenses)
    config = getattr(model, "config", {}) or {}
    if task is not None:
        check_choice("task", task, TASKS)
    else:
        task = config.get("label_task") or task_for_kind(getattr(dataset, "kind", "custom"))
    name = model_name or str(config.get("architecture", type(model).__name__))
    kind = str(getattr(dataset, "kind", "custom"))
    if kind in KIND_TASK and KIND_TASK[kind] != task:
        raise ValueError(
            f"task: the classifier predicts {task!r} but data set kind {kind!r} is labelled "
            f"for {KIND_TASK[kind]!r}; evaluate it on matching data"
        )
    model.eval()
    param = next(iter(model.parameters()), None)
    dev = param.device if param is not None else torch.device("cpu")
    protocol = {"batch_size": int(batch_size), "png_roundtrip": png_roundtrip}
    if task == "glaucoma":
        protocol["threshold"] = float(threshold)
    rows: list[dict] = []
    for start in range(0, len(dataset), int(batch_size)):
        idx = list(range(start, min(start + int(batch_size), len(dataset))))
        items = [dataset[i] for i in idx]
        y = torch.tensor([item_label(it, task, threshold) for it in items], dtype=torch.long)
        names = [str(it.get("name", i)) for it, i in zip(items, idx, strict=True)]
        x = _batch(dataset, idx).to(dev)
        yd = y.to(dev)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(int(seed) + start)
            with torch.no_grad():
                clean = _predict(model(x)).cpu()
                def_clean = [_predict(model(d(x))).cpu() for d in defs]
            for atk in atks:
                targets = [(d, Defended(model, d)) for d in defs] if adaptive else [(None, model)]
                for fixed, victim in targets:
                    res = atk(victim, x, yd)
                    adv = _quantize(res.adversarial) if png_roundtrip else res.adversarial
                    with torch.no_grad():
                        attacked = _predict(model(adv)).cpu()
                        chosen = defs if fixed is None else [fixed]
                        defended = {id(d): _predict(model(d(adv))).cpu() for d in chosen}
                    cfg = json.dumps({"attack": atk.config(), **protocol}, sort_keys=True)
                    for j, d in enumerate(defs):
                        if id(d) not in defended:
                            continue
                        for b, i in enumerate(idx):
                            label = int(y[b])
                            rows.append(
                                {
                                    "model": name,
                                    "dataset": kind,
                                    "sample": names[b],
                                    "index": i,
                                    "task": task,
                                    "label": label,
                                    "attack": atk.spec(),
                                    "adaptive": bool(res.adaptive),
                                    "defense": d.spec(),
                                    "clean_pred": int(clean[b]),
                                    "clean_correct": bool(clean[b] == label),
                                    "attacked_pred": int(attacked[b]),
                                    "attacked_correct": bool(attacked[b] == label),
                                    "defended_pred": int(defended[id(d)][b]),
                                    "defended_correct": bool(defended[id(d)][b] == label),
                                    "defended_clean_pred": int(def_clean[j][b]),
                                    "defended_clean_correct": bool(def_clean[j][b] == label),
                                    "l2": float(res.stats["l2"][b]),
                                    "linf": float(res.stats["linf"][b]),
                                    "steps": int(res.stats["steps"][b]),
                                    "attack_success": bool(res.stats["success"][b]),
                                    "config": cfg,
                                    "seed": int(seed),
                                    "version": __version__,
                                }
                            )
    return rows
