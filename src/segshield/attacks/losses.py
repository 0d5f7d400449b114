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
    "class_probabilities",
    "onehot_cosine",
    "masked_cross_entropy",
    "balanced_masked_cross_entropy",
    "js_divergence",
    "SEG_LOSSES",
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


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities: softmax over K >= 2 classes, ``[1 - sigmoid, sigmoid]`` for K = 1.

    Shape:
        ``(B, K, ...)`` -> ``(B, max(K, 2), ...)``.

    Example:
        >>> class_probabilities(torch.tensor([[[[0.0]]]])).flatten().tolist()
        [0.5, 0.5]
    """
    return F.softmax(two_class_logits(logits), dim=1)


def _valid_labels(labels: torch.Tensor, k: int, ignore_index: int) -> tuple[torch.Tensor, ...]:
    valid = (labels != ignore_index) & (labels >= 0) & (labels < k)
    return valid, torch.where(valid, labels, torch.zeros_like(labels))


def onehot_cosine(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Cosine similarity per pixel between the class probabilities and the one-hot label.

    ``cos(p, e_y) = p_y / ||p||_2`` with p from :func:`class_probabilities` (CosPGD,
    Agnihotri & Keuper, ICML 2024; docs/ALGORITHMS.md §4). Ignored pixels give 0.

    Shape:
        logits ``(B, K, H, W)``, labels ``(B, H, W)``; returns ``(B, H, W)``.

    Example:
        >>> z = torch.tensor([[[[0.0]], [[0.0]]]])
        >>> round(onehot_cosine(z, torch.tensor([[[1]]])).item(), 4)
        0.7071
    """
    p = class_probabilities(logits)
    valid, y = _valid_labels(labels, p.shape[1], ignore_index)
    py = p.gather(1, y.unsqueeze(1)).squeeze(1)
    return torch.where(valid, py / p.norm(dim=1), torch.zeros_like(py))


def masked_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    targeted: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Cross-entropy on the pixels the attack has not won yet (SEA, Croce et al., ECCV 2024).

    Untargeted (``labels`` the ground truth): only pixels still predicted as their label
    count. Targeted (``labels`` the target): only pixels not yet predicted as the target.

    Shape:
        logits ``(B, K, H, W)``, labels ``(B, H, W)``; returns ``(B, H, W)``.

    Example:
        >>> z = torch.tensor([[[[0.0, 1.0]], [[1.0, 0.0]]]])
        >>> masked_cross_entropy(z, torch.tensor([[[1, 1]]])).tolist()[0][0][1]
        0.0
    """
    correct = predict(logits) == labels
    keep = ~correct if targeted else correct
    return pixel_cross_entropy(logits, labels, ignore_index) * keep


def balanced_masked_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    targeted: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Masked cross-entropy with each class weighted by the inverse of its pixel count.

    A pixel of class c gets weight ``N / (C * n_c)``: ``n_c`` pixels of class c and N
    non-ignored pixels in the sample's ``labels``, C classes present, so every present
    class carries the same total weight and the weights average 1 (docs/ALGORITHMS.md §4).

    Shape:
        logits ``(B, K, H, W)``, labels ``(B, H, W)``; returns ``(B, H, W)``.

    Example:
        >>> z = torch.tensor([[[[0.0, 0.0, 0.0, 0.0]], [[-1.0, -1.0, -1.0, 1.0]]]])
        >>> w = balanced_masked_cross_entropy(z, torch.tensor([[[0, 0, 0, 1]]]))
        >>> [round(v, 4) for v in w.flatten().tolist()]  # CE ln(1 + 1/e) x 2/3, x 2
        [0.2088, 0.2088, 0.2088, 0.6265]
    """
    k = max(int(logits.shape[1]), 2)
    valid, y = _valid_labels(labels, k, ignore_index)
    onehot = F.one_hot(y, k) * valid.unsqueeze(-1)
    counts = onehot.flatten(1, -2).sum(1).to(logits.dtype)  # (B, k)
    present = (counts > 0).sum(1).clamp_min(1).to(logits.dtype)
    n = counts.sum(1)
    per_class = torch.where(counts > 0, n.unsqueeze(1) / (present.unsqueeze(1) * counts), 0.0)
    weight = per_class.gather(1, y.flatten(1)).view_as(labels) * valid
    return (
        masked_cross_entropy(logits, labels, targeted=targeted, ignore_index=ignore_index) * weight
    )


def js_divergence(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Jensen-Shannon divergence per pixel between the prediction and the one-hot label.

    ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, p from
    :func:`class_probabilities`, q the one-hot label (natural log, so at most ln 2).
    Ignored pixels give 0.

    Shape:
        logits ``(B, K, H, W)``, labels ``(B, H, W)``; returns ``(B, H, W)``.

    Example:
        >>> z = torch.tensor([[[[-30.0]], [[30.0]]]])
        >>> round(js_divergence(z, torch.tensor([[[0]]])).item(), 4)
        0.6931
    """
    p = class_probabilities(logits)
    valid, y = _valid_labels(labels, p.shape[1], ignore_index)
    q = F.one_hot(y, p.shape[1]).movedim(-1, 1).to(p.dtype)
    m = (p + q) / 2
    kl_p = torch.xlogy(p, p) - torch.xlogy(p, m)
    kl_q = torch.xlogy(q, q) - torch.xlogy(q, m)
    return ((kl_p + kl_q).sum(1) / 2) * valid


#: The per-pixel losses of APGD (``loss=`` setting), name -> ``f(logits, labels, targeted)``.
SEG_LOSSES = {
    "ce": lambda z, y, targeted: pixel_cross_entropy(z, y),
    "mce": lambda z, y, targeted: masked_cross_entropy(z, y, targeted=targeted),
    "bmce": lambda z, y, targeted: balanced_masked_cross_entropy(z, y, targeted=targeted),
    "js": lambda z, y, targeted: js_divergence(z, y),
}
