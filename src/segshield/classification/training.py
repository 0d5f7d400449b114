"""Train a small image classifier on a labelled data set (``segshield train --task classify``).

Labels come from :mod:`segshield.classification.labels` (fundus: glaucoma when the
CDR reaches 0.6; dermoscopy phantom: malignancy). Training: Adam, class-weighted
cross-entropy (inverse class frequency of the training split, so a rare class still
counts), random horizontal flips (they keep both labels: the vertical CDR and the
ABCD asymmetry and colours do not change), seeded shuffling. After each epoch the
validation accuracy is measured; the weights of the best epoch (highest balanced
accuracy, the earliest on ties) are saved as ``OUT.safetensors`` + ``OUT.json``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from segshield._checks import check_number
from segshield.classification.labels import CLASS_NAMES, dataset_labels, task_for_kind
from segshield.classification.models import Classifier, build_classifier, save_classifier
from segshield.utils.progress import progress
from segshield.utils.seed import seed_everything

__all__ = ["fit_classifier", "classifier_accuracy"]

log = logging.getLogger(__name__)


def _batch(dataset: Sequence[Mapping[str, Any]], idx: Sequence[int]) -> torch.Tensor:
    items = [dataset[int(i)] for i in idx]
    shapes = {tuple(it["image"].shape) for it in items}
    if len(shapes) != 1:
        names = [str(it.get("name", "?")) for it in items]
        raise ValueError(
            f"dataset: images of different sizes {sorted(shapes)} in one batch ({names}); "
            "load the data set with a fixed size"
        )
    return torch.stack([torch.as_tensor(it["image"], dtype=torch.float32) for it in items])


@torch.no_grad()
def classifier_accuracy(
    model: torch.nn.Module,
    dataset: Sequence[Mapping[str, Any]],
    labels: torch.Tensor,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Accuracy and balanced accuracy (mean per-class recall) of a classifier.

    Args:
        model: classifier returning ``(B, K)`` logits (put in eval mode here).
        dataset: indexable items with ``"image"`` ``(C, H, W)`` in ``[0, 1]``.
        labels: ``(N,)`` int64 labels of the items.
        batch_size: items per forward pass, >= 1. Default 16.
        device: device of the model. Default ``"cpu"``.

    Returns:
        ``{"accuracy", "balanced_accuracy"}``; a class absent from ``labels`` is left
        out of the balanced accuracy.

    Raises:
        ValueError: ``labels`` does not have one entry per item, or an empty data set.

    Example:
        >>> m = build_classifier("cnn", width=2, depth=1).eval()
        >>> ds = [{"image": torch.rand(3, 8, 8)} for _ in range(4)]
        >>> sorted(classifier_accuracy(m, ds, torch.tensor([0, 1, 0, 1])))
        ['accuracy', 'balanced_accuracy']
    """
    check_number("batch_size", batch_size, low=1, integer=True)
    if len(dataset) == 0 or labels.shape != (len(dataset),):
        raise ValueError(
            f"labels: expected one label per item ({len(dataset)}), got shape "
            f"{tuple(labels.shape)}; the data set must not be empty"
        )
    model.eval()
    preds = []
    for start in range(0, len(dataset), batch_size):
        x = _batch(dataset, range(start, min(start + batch_size, len(dataset)))).to(device)
        preds.append(_predict(model(x)).cpu())
    pred = torch.cat(preds)
    correct = pred == labels
    recalls = [correct[labels == c].double().mean() for c in labels.unique()]
    return {
        "accuracy": float(correct.double().mean()),
        "balanced_accuracy": float(torch.stack(recalls).mean()),
    }


def _predict(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def fit_classifier(
    data: str,
    model: str,
    size: int,
    epochs: int,
    out: Path,
    seed: int,
    batch_size: int,
    lr: float,
    device: str,
) -> dict:
    """Train a classifier on the train split of ``data`` and save the best epoch.

    Paper: issue 7 (classification downstream of Liu et al., MICCAI 2020); labels as in
    :mod:`segshield.classification.labels`.

    Args:
        data: data-set spec ``KIND[:PATH]`` with image-level labels (``phantom-fundus``,
            ``phantom-derm``, ``origa:PATH``, ``drishti:PATH``, ``refuge:PATH``).
        model: classifier name from :func:`list_classifiers`, optionally with settings
            (``"cnn:width=8,depth=2"``).
        size: square image side, in ``[8, 4096]``.
        epochs: training epochs, >= 1.
        out: checkpoint stem (``OUT.safetensors`` + ``OUT.json`` are written).
        seed: seed of the data split, the weights, shuffling and flips, >= 0.
        batch_size: items per step, >= 1.
        lr: Adam learning rate, > 0.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        Summary dict: ``checkpoint`` (the two paths as strings), ``task``,
        ``val_accuracy``, ``val_balanced_accuracy``, ``best_epoch``, ``epochs``,
        ``train_size``, ``val_size``, ``class_counts`` (training split), ``history``
        (per-epoch train loss and validation scores), ``seconds``.

    Raises:
        ValueError: an argument out of range (named in the message), an unknown model
            (the valid names are listed), a data set without labels, or an empty split.
        FileNotFoundError: a data folder is missing.

    Example:
        >>> import tempfile, os
        >>> out = os.path.join(tempfile.mkdtemp(), "clf")
        >>> r = fit_classifier("phantom-derm", "cnn:width=2,depth=1", 16, 1, out, 0, 8,
        ...                    1e-3, "cpu")  # doctest: +SKIP
    """
    from segshield.classification.models import CLASSIFIERS
    from segshield.data import load_dataset, parse_spec
    from segshield.models import parse_model_spec
    from segshield.training.loop import resolve_device

    check_number("size", size, low=8, high=4096, integer=True)
    check_number("epochs", epochs, low=1, integer=True)
    check_number("seed", seed, low=0, integer=True)
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("lr", lr, low=0.0, low_inclusive=False)
    name, _ = parse_model_spec(model)
    if name not in CLASSIFIERS:
        raise ValueError(
            f"model: expected a classifier, one of {', '.join(CLASSIFIERS)} (optionally "
            f"with settings, e.g. 'cnn:width=8'), got {model!r}"
        )
    dev = resolve_device(device)
    task = task_for_kind(parse_spec(data)[0])  # before any data is read
    t0 = time.perf_counter()
    seed_everything(int(seed))
    train_ds = load_dataset(data, size=int(size), split="train", seed=int(seed))
    val_ds = load_dataset(data, size=int(size), split="val", seed=int(seed))
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(
            f"data: {data!r} gave {len(train_ds)} training and {len(val_ds)} validation "
            "items; both splits need at least one"
        )
    y_train = dataset_labels(train_ds, task)
    y_val = dataset_labels(val_ds, task)
    channels = int(train_ds[0]["image"].shape[0])
    net = build_classifier(
        model, num_classes=2, in_channels=channels, class_names=list(CLASS_NAMES[task])
    )
    net.config.update(
        {
            "label_task": task,
            "threshold": 0.6 if task == "glaucoma" else None,
            "input_size": [int(size), int(size)],
            "trained_on": data,
            "seed": int(seed),
        }
    )
    net.to(dev)
    counts = torch.bincount(y_train, minlength=2).double()
    weight = (counts.sum() / (2 * counts.clamp_min(1))).float().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    gen = torch.Generator().manual_seed(int(seed))
    n = len(train_ds)
    steps_per_epoch = -(-n // int(batch_size))
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    log.info(
        "training %s classifier %s on %s: %d train / %d val items (class counts %s)",
        task,
        model,
        data,
        n,
        len(val_ds),
        counts.long().tolist(),
    )
    epochs_bar = progress(range(1, int(epochs) + 1), desc="classify", total=int(epochs))
    for epoch in epochs_bar:
        net.train()
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        total = torch.zeros((), device=dev)
        for s in range(steps_per_epoch):
            idx = order[s * int(batch_size) : (s + 1) * int(batch_size)]
            x = _batch(train_ds, idx.tolist())
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x).to(dev)
            y = y_train[idx].to(dev)
            loss = F.cross_entropy(net(x), y, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.numel()
        scores = classifier_accuracy(net, val_ds, y_val, batch_size=int(batch_size), device=dev)
        history.append({"epoch": epoch, "train_loss": float(total) / n, **scores})
        log.info(
            "epoch %d: train loss %.4f, val accuracy %.3f (balanced %.3f)",
            epoch,
            history[-1]["train_loss"],
            scores["accuracy"],
            scores["balanced_accuracy"],
        )
        if best is None or scores["balanced_accuracy"] > best[0]:
            state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            best = (scores["balanced_accuracy"], epoch, state)
    assert best is not None
    net.load_state_dict(best[2])
    best_scores = history[best[1] - 1]
    net.config["val_scores"] = {
        "accuracy": best_scores["accuracy"],
        "balanced_accuracy": best_scores["balanced_accuracy"],
    }
    paths = save_classifier(_cpu(net), out)
    return {
        "checkpoint": [str(p) for p in paths],
        "task": task,
        "val_accuracy": best_scores["accuracy"],
        "val_balanced_accuracy": best_scores["balanced_accuracy"],
        "best_epoch": best[1],
        "epochs": int(epochs),
        "train_size": n,
        "val_size": len(val_ds),
        "class_counts": counts.long().tolist(),
        "history": history,
        "seconds": time.perf_counter() - t0,
    }


def _cpu(net: Classifier) -> Classifier:
    return net.to("cpu").eval()
