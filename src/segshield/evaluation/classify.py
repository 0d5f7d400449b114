"""Classifier accuracy clean, attacked and defended: the classification pass of the harness.

Protocol (the FR paper's classification experiment, Liu et al., MICCAI 2020): each batch
is classified clean; each attack (FGSM, PGD, CW, ...) attacks the undefended classifier
(untargeted, with the true labels); the adversarial images are rounded to the 8-bit grid
(the paper's PNG round trip, ``png_roundtrip=True``); then every defence is applied
before the classifier. The defence is also applied to the clean image (benign accuracy
loss). With ``adaptive=True`` each attack instead attacks ``Defended(model, defence)``
(BPDA / surrogate gradients, EOT), once per defence; docs/ALGORITHMS.md §4: a defence
evaluation without an adaptive attack is incomplete.

:func:`attack_classifier_batch` is the one pass over a batch, used by the harness
(``EvalConfig.classifiers``, scored by
:class:`~segshield.evaluation.scoring.ClassificationScorer`) and by
:func:`evaluate_classifier`, which returns its per-sample predictions as rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from segshield._checks import check_choice, check_number
from segshield._version import __version__
from segshield.data.labels import KIND_TASK, TASKS, item_label, task_for_kind
from segshield.evaluation.scoring import ClassificationScorer, attack_batch
from segshield.training.classify import stack_images

__all__ = ["evaluate_classifier", "attack_classifier_batch", "resolve_attacks", "resolve_defenses"]

#: the stages of a classified sample, in row order
STAGES = ("clean", "benign", "attacked", "recovered")


def resolve_attacks(attacks: Sequence[Any]) -> list[Any]:
    """Attack objects for specs or objects; each must support classifiers.

    Raises:
        TypeError: not a spec or an ``Attack``.
        ValueError: a segmentation-only attack.
    """
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


def resolve_defenses(defenses: Sequence[Any]) -> list[Any]:
    """Defence objects for specs or ``Defense`` objects.

    Raises:
        TypeError: anything else.
    """
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


def attack_classifier_batch(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[Any],
    defenses: Sequence[Any],
    *,
    adaptive: bool,
    png_roundtrip: bool,
    seed: int,
) -> list[tuple[Any, int, Any, dict[str, torch.Tensor]]]:
    """Classify one batch clean, defended, attacked and recovered, under a seeded RNG.

    The global RNG is forked and seeded with ``seed`` (results do not depend on earlier
    calls); the clean and defended-clean labels come first, then each attack in turn: on
    the bare model, or with ``adaptive`` on ``Defended(model, d)`` for each defence.

    Args:
        model: classifier in eval mode, returning ``(B, K)`` logits.
        x: images ``(B, C, H, W)`` in ``[0, 1]`` on the model's device.
        labels: ``(B,)`` true labels (the attack's untargeted labels).
        attacks: ``Attack`` objects supporting classifiers.
        defenses: ``Defense`` objects.
        adaptive: attack through each defence instead of the bare model.
        png_roundtrip: round the adversarial images to the 8-bit grid.
        seed: seed of the attack's and defences' randomness.

    Returns:
        ``(attack, defence index, attack result, predictions)`` per attack, attacked
        model and defence, the predictions ``(B,)`` on the CPU keyed by :data:`STAGES`.

    Example:
        >>> from segshield.attacks import get_attack
        >>> from segshield.defenses import get_defense
        >>> from segshield.models import build_model
        >>> m = build_model("cnn", width=2, depth=1).eval()
        >>> out = attack_classifier_batch(m, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]),
        ...     [get_attack("fgsm")], [get_defense("none")], adaptive=False,
        ...     png_roundtrip=True, seed=0)
        >>> sorted(out[0][3])
        ['attacked', 'benign', 'clean', 'recovered']
    """
    from segshield.attacks import Defended

    predict = ClassificationScorer.predict
    dev = x.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(int(seed))
        with torch.no_grad():
            clean = predict(model, x).cpu()
            benign = [predict(model, d(x)).cpu() for d in defenses]
        out = []
        for attack in attacks:
            victims = [(j, Defended(model, d)) for j, d in enumerate(defenses)]
            for fixed, victim in victims if adaptive else [(None, model)]:
                res, adv, _ = attack_batch(attack, victim, x, labels, None, png_roundtrip, dev)
                chosen = range(len(defenses)) if fixed is None else [fixed]
                with torch.no_grad():
                    attacked = predict(model, adv).cpu()
                    for j in chosen:
                        preds = {"clean": clean, "benign": benign[j], "attacked": attacked}
                        preds["recovered"] = predict(model, defenses[j](adv)).cpu()
                        out.append((attack, j, res, preds))
    return out


def _check(seed, batch_size, threshold, adaptive, png_roundtrip, attacks, defenses, dataset):
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


def label_task(model: torch.nn.Module, dataset: Any, task: str | None) -> str:
    """The task of the labels: ``task``, else the model's ``label_task``, else the data's.

    Raises:
        ValueError: an unknown task, or a data set labelled for another task.
    """
    config = getattr(model, "config", {}) or {}
    if task is not None:
        check_choice("task", task, TASKS)
    else:
        task = config.get("label_task") or task_for_kind(getattr(dataset, "kind", "custom"))
    kind = str(getattr(dataset, "kind", "custom"))
    if kind in KIND_TASK and KIND_TASK[kind] != task:
        raise ValueError(
            f"task: the classifier predicts {task!r} but data set kind {kind!r} is labelled "
            f"for {KIND_TASK[kind]!r}; evaluate it on matching data"
        )
    return task


#: stage -> its name in the rows of :func:`evaluate_classifier`, in their column order
_ROW_STAGES = {
    "clean": "clean",
    "attacked": "attacked",
    "recovered": "defended",
    "benign": "defended_clean",
}


def _rows(out, idx, items, y, defs, head: dict[str, Any], tail: dict[Any, dict]) -> list[dict]:
    """Rows of :func:`evaluate_classifier` for the outputs of one batch."""
    rows = []
    for atk, j, res, preds in out:
        for b, i in enumerate(idx):
            label = int(y[b])
            row = {"model": head["model"], "dataset": head["dataset"]}
            row.update(sample=str(items[b].get("name", i)), index=i, task=head["task"])
            row.update(label=label, attack=atk.spec(), adaptive=bool(res.adaptive))
            row["defense"] = defs[j].spec()
            for stage, name in _ROW_STAGES.items():
                row[f"{name}_pred"] = int(preds[stage][b])
                row[f"{name}_correct"] = bool(preds[stage][b] == label)
            row.update(
                l2=float(res.stats["l2"][b]),
                linf=float(res.stats["linf"][b]),
                steps=int(res.stats["steps"][b]),
                attack_success=bool(res.stats["success"][b]),
            )
            rows.append({**row, **tail[id(atk)]})
    return rows


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

    Paper: FR evaluated on classifiers (Liu et al., MICCAI 2020); CW (Carlini & Wagner
    2017), FGSM and PGD from :mod:`segshield.attacks`; FR and the baselines from
    :mod:`segshield.defenses`.

    Args:
        model: classifier taking ``[0, 1]`` images and returning ``(B, K)`` logits, e.g.
            from ``segshield.models.load``; put in eval mode here.
        dataset: indexable items with ``"image"``, ``"name"`` and the label source
            (``"cdr"``/``"mask"`` for glaucoma, ``"malignant"`` for malignancy); all
            images of one size.
        attacks: attack specs (``"pgd:eps=8/255"``) or ``Attack`` objects that support
            classifiers.
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
            ``config["label_task"]`` (set by ``fit_classifier``), else the task of
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
        >>> from segshield.models import build_model
        >>> m = build_model("cnn", width=2, depth=1)
        >>> ds = [{"image": torch.rand(3, 8, 8), "name": "a", "malignant": 1}]
        >>> rows = evaluate_classifier(m, ds, ["fgsm"], ["none"], task="malignancy")
        >>> len(rows), rows[0]["defense"], rows[0]["label"]
        (1, 'none', 1)
    """
    _check(seed, batch_size, threshold, adaptive, png_roundtrip, attacks, defenses, dataset)
    atks, defs = resolve_attacks(attacks), resolve_defenses(defenses)
    task = label_task(model, dataset, task)
    config = getattr(model, "config", {}) or {}
    name = model_name or str(config.get("architecture", type(model).__name__))
    head = {"model": name, "dataset": str(getattr(dataset, "kind", "custom")), "task": task}
    model.eval()
    param = next(iter(model.parameters()), None)
    dev = param.device if param is not None else torch.device("cpu")
    protocol = {"batch_size": int(batch_size), "png_roundtrip": png_roundtrip}
    if task == "glaucoma":
        protocol["threshold"] = float(threshold)
    tail = {
        id(atk): {
            "config": json.dumps({"attack": atk.config(), **protocol}, sort_keys=True),
            "seed": int(seed),
            "version": __version__,
        }
        for atk in atks
    }
    rows: list[dict] = []
    for start in range(0, len(dataset), int(batch_size)):
        idx = list(range(start, min(start + int(batch_size), len(dataset))))
        items = [dataset[i] for i in idx]
        y = torch.tensor([item_label(it, task, threshold) for it in items], dtype=torch.long)
        x = stack_images(dataset, idx).to(dev)
        out = attack_classifier_batch(
            model,
            x,
            y.to(dev),
            atks,
            defs,
            adaptive=adaptive,
            png_roundtrip=png_roundtrip,
            seed=int(seed) + start,
        )
        rows += _rows(out, idx, items, y, defs, head, tail)
    return rows
