"""Per-pixel losses shared by the attacks (docs/ALGORITHMS.md §4).

Every function works for segmentation logits ``(B, K, H, W)`` with labels ``(B, H, W)``
and, where noted, for classifier logits ``(B, K)`` with labels ``(B,)``. A K = 1 logit map
is a sigmoid model; it is expanded to two classes so that one code path serves both.
Pixels whose label is the ignore index (255) contribute nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segshield.metrics.segmentation import IGNORE_INDEX

__all__ = [
    "two_class_logits",
    "predict",
    "pixel_cross_entropy",
    "per_sample_mean",
    "asma_prediction_loss",
]


def two_class_logits(logits: torch.Tensor, *, signed: bool = False) -> torch.Tensor:
    """Expand a K = 1 sigmoid logit ``z`` to two class scores; K >= 2 passes through.

    ``[0, z]`` gives ``softmax == [1 - sigmoid(z), sigmoid(z)]`` (cross-entropy equals binary
    cross-entropy); ``signed=True`` gives ``[-z, z]``, the per-class outputs for which the
    multi-class ASMA loss equals its binary single-channel form (docs/ALGORITHMS.md §4).

    Args:
        logits: ``(B, K, ...)`` logits (``(B, K)`` classifier or ``(B, K, H, W)``).
        signed: use ``[-z, z]`` instead of ``[0, z]``. Default False.

    Returns:
        ``(B, max(K, 2), ...)`` logits.

    Example:
        >>> two_class_logits(torch.tensor([[[[2.0]]]])).flatten().tolist()
        [0.0, 2.0]
    """
    if logits.shape[1] != 1:
        return logits
    first = -logits if signed else torch.zeros_like(logits)
    return torch.cat([first, logits], dim=1)


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Hard prediction: sigmoid > 0.5 for K = 1, argmax otherwise (segmentation or classifier).

    Shape:
        ``(B, K, ...)`` -> ``(B, ...)`` int64.

    Example:
        >>> predict(torch.tensor([[0.1, 0.9]])).tolist()
        [1]
    """
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def pixel_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Cross-entropy per pixel (or per sample for classifiers), zero where ignored.

    Args:
        logits: ``(B, K, H, W)`` or classifier ``(B, K)``; K = 1 is binary (sigmoid).
        labels: ``(B, H, W)`` or ``(B,)`` int64 class ids; ``ignore_index`` pixels give 0.
        ignore_index: label to skip. Default 255.

    Returns:
        ``(B, H, W)`` or ``(B,)`` float loss.

    Example:
        >>> z = torch.tensor([[[[0.0]], [[0.0]]]])
        >>> round(pixel_cross_entropy(z, torch.tensor([[[1]]])).item(), 4)
        0.6931
    """
    return F.cross_entropy(
        two_class_logits(logits), labels, ignore_index=ignore_index, reduction="none"
    )


def per_sample_mean(
    loss: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean of a per-pixel loss over each sample's non-ignored pixels.

    Shape:
        loss, labels: ``(B, ...)``; returns ``(B,)``. A sample with no valid pixel gives 0.

    Example:
        >>> per_sample_mean(torch.ones(1, 2, 2), torch.tensor([[[0, 255], [1, 1]]])).tolist()
        [1.0]
    """
    if loss.ndim == 1:
        return loss
    valid = (labels != ignore_index).flatten(1)
    n = valid.sum(1).clamp_min(1).to(loss.dtype)
    return (loss.flatten(1) * valid).sum(1) / n


def asma_prediction_loss(
    logits: torch.Tensor, target: torch.Tensor, pred: torch.Tensor
) -> torch.Tensor:
    """ASMA prediction loss per sample (Ozbulak et al., MICCAI 2019, eq. 2; docs/ALGORITHMS.md §4).

    ``L = sum_c sum_pixels g_c(X) 1[Y^t = c] 1[P != c]``: the model output of the target
    class at every pixel not yet predicted as its target. For K = 1 the binary
    single-channel form ``sum z 1[Y^t=1] 1[P=0] - sum z 1[Y^t=0] 1[P=1]`` is used (the
    same formula with class outputs ``[-z, z]``). Target pixels equal to 255 or to a
    class >= K contribute nothing.

    Args:
        logits: ``(B, K, H, W)`` raw model outputs.
        target: ``(B, H, W)`` target class ids.
        pred: ``(B, H, W)`` current hard prediction of ``logits``.

    Returns:
        ``(B,)`` loss (to be maximised).

    Example:
        >>> z = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
        >>> asma_prediction_loss(z, torch.tensor([[[1, 1]]]), torch.tensor([[[0, 1]]])).tolist()
        [3.0]
    """
    g = two_class_logits(logits, signed=True)
    k = g.shape[1]
    valid = (target >= 0) & (target < k)
    t = torch.where(valid, target, torch.zeros_like(target))
    picked = g.gather(1, t.unsqueeze(1)).squeeze(1)
    sel = valid & (pred != target)
    return (picked * sel).flatten(1).sum(1)
