"""Train a small image classifier on a labelled data set (``segshield train --task classify``).

Labels come from :mod:`segshield.data.labels` (fundus: glaucoma when the CDR reaches
0.6; dermoscopy phantom: malignancy). Training runs the shared loop
(:func:`segshield.training.loop.fit`) with Adam, class-weighted cross-entropy (inverse
class frequency of the training split, so a rare class still counts), random horizontal
flips (they keep both labels: the vertical CDR and the ABCD asymmetry and colours do not
change) and seeded shuffling (:class:`ClassifierSteps`). After each epoch the
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
from segshield.data.labels import CLASS_NAMES, dataset_labels, task_for_kind
from segshield.models.checkpoint import checkpoint_paths
from segshield.models.registry import CLASSIFY, build_model, list_models, parse_model_spec
from segshield.training.loop import fit
from segshield.utils.device import resolve_device
from segshield.utils.seed import seed_everything

__all__ = ["fit_classifier", "classifier_accuracy", "predict_labels", "stack_images"]

log = logging.getLogger(__name__)


def stack_images(dataset: Sequence[Mapping[str, Any]], idx: Sequence[int]) -> torch.Tensor:
    """The images of items ``idx`` as one float32 batch ``(B, C, H, W)``.

    Raises:
        ValueError: images of different sizes (the message names the items).

    Example:
        >>> stack_images([{"image": torch.zeros(1, 2, 2)}] * 3, [0, 2]).shape
        torch.Size([2, 1, 2, 2])
    """
    items = [dataset[int(i)] for i in idx]
    shapes = {tuple(it["image"].shape) for it in items}
    if len(shapes) != 1:
        names = [str(it.get("name", "?")) for it in items]
        raise ValueError(
            f"dataset: images of different sizes {sorted(shapes)} in one batch ({names}); "
            "load the data set with a fixed size"
        )
    return torch.stack([torch.as_tensor(it["image"], dtype=torch.float32) for it in items])


def predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """Class labels ``(B,)`` of classifier logits ``(B, K)``: K = 1 sigmoid > 0.5, else argmax.

    Example:
        >>> predict_labels(torch.tensor([[0.2, 0.9], [1.0, -1.0]])).tolist()
        [1, 0]
        >>> predict_labels(torch.tensor([[0.3], [-0.3]])).tolist()
        [1, 0]
    """
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


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
        >>> from segshield.models import build_model
        >>> m = build_model("cnn", width=2, depth=1).eval()
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
        x = stack_images(dataset, range(start, min(start + batch_size, len(dataset)))).to(device)
        preds.append(predict_labels(model(x)).cpu())
    pred = torch.cat(preds)
    correct = pred == labels
    recalls = [correct[labels == c].double().mean() for c in labels.unique()]
    return {
        "accuracy": float(correct.double().mean()),
        "balanced_accuracy": float(torch.stack(recalls).mean()),
    }


class ClassifierSteps:
    """The classification parts of the training loop: weighted CE, flips, accuracy.

    Args:
        train_set, val_set: labelled item sequences.
        y_train, y_val: their ``(N,)`` labels.
        batch_size: items per step.
        seed: seed of the shuffling and flips (one generator for the whole run).
        device: where the model is.
    """

    score = "balanced_accuracy"

    def __init__(self, train_set, val_set, y_train, y_val, batch_size, seed, device):
        self.train_set, self.val_set = train_set, val_set
        self.y_train, self.y_val = y_train, y_val
        self.batch_size, self.device = batch_size, device
        self.gen = torch.Generator().manual_seed(seed)
        counts = torch.bincount(y_train, minlength=2).double()
        self.weight = (counts.sum() / (2 * counts.clamp_min(1))).float().to(device)

    def batches(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(indices, flip)`` of each step: a seeded permutation and coin flips."""
        n = len(self.train_set)
        order = torch.randperm(n, generator=self.gen)
        flips = torch.rand(n, generator=self.gen) < 0.5
        bs = self.batch_size
        return [(order[s : s + bs], flips[order[s : s + bs]]) for s in range(0, n, bs)]

    def lr(self, epoch: int, step: int) -> None:
        """Adam's own constant learning rate."""
        return None

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Class-weighted cross-entropy of the (flipped) batch; weight = its size."""
        idx, flip = batch
        x = stack_images(self.train_set, idx.tolist())
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).to(self.device)
        y = self.y_train[idx].to(self.device)
        return F.cross_entropy(model(x), y, weight=self.weight), idx.numel()

    def validate(self, model: torch.nn.Module) -> dict[str, Any]:
        """Accuracy and balanced accuracy on the validation set."""
        return classifier_accuracy(
            model, self.val_set, self.y_val, batch_size=self.batch_size, device=self.device
        )

    def best_config(self, epoch: int, scores: dict[str, Any]) -> dict[str, Any]:
        """The best epoch's validation scores."""
        return {"val_scores": dict(scores)}


def _check(size, epochs, seed, batch_size, lr, model) -> None:
    check_number("size", size, low=8, high=4096, integer=True)
    check_number("epochs", epochs, low=1, integer=True)
    check_number("seed", seed, low=0, integer=True)
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("lr", lr, low=0.0, low_inclusive=False)
    name, _ = parse_model_spec(model)
    if name not in list_models(CLASSIFY):
        raise ValueError(
            f"model: expected a classifier, one of {', '.join(list_models(CLASSIFY))} "
            f"(optionally with settings, e.g. 'cnn:width=8'), got {model!r}"
        )


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

    Paper: FR evaluated on classifiers downstream of segmentation (Liu et al., MICCAI
    2020); labels as in :mod:`segshield.data.labels`.

    Args:
        data: data-set spec ``KIND[:PATH]`` with image-level labels (``phantom-fundus``,
            ``phantom-derm``, ``origa:PATH``, ``drishti:PATH``, ``refuge:PATH``).
        model: classifier name from ``list_models("classify")``, optionally with
            settings (``"cnn:width=8,depth=2"``).
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
    from segshield.data import load_dataset, parse_spec

    _check(size, epochs, seed, batch_size, lr, model)
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
    y_train, y_val = dataset_labels(train_ds, task), dataset_labels(val_ds, task)
    channels = int(train_ds[0]["image"].shape[0])
    net = build_model(
        model, task=CLASSIFY, in_channels=channels, class_names=list(CLASS_NAMES[task])
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
    steps = ClassifierSteps(train_ds, val_ds, y_train, y_val, int(batch_size), int(seed), dev)
    counts = torch.bincount(y_train, minlength=2).long().tolist()
    log.info(
        "training %s classifier %s on %s: %d train / %d val items (class counts %s)",
        *(task, model, data, len(train_ds), len(val_ds), counts),
    )
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    settings = {"lr": float(lr), "batch_size": int(batch_size), "epochs": int(epochs)}
    result = fit(
        net,
        steps,
        opt,
        epochs=int(epochs),
        out=Path(out),
        device=dev,
        settings=settings,
        keep_state=False,
    )
    net.to("cpu").eval()
    best = result["best_scores"]
    return {
        "checkpoint": [str(p) for p in checkpoint_paths(out)],
        "task": task,
        "val_accuracy": best["accuracy"],
        "val_balanced_accuracy": best["balanced_accuracy"],
        "best_epoch": result["best_epoch"],
        "epochs": int(epochs),
        "train_size": len(train_ds),
        "val_size": len(val_ds),
        "class_counts": counts,
        "history": [
            {"epoch": h["epoch"], "train_loss": h["loss"], **h["val"]} for h in result["history"]
        ],
        "seconds": time.perf_counter() - t0,
    }
