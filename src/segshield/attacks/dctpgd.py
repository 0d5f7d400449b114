"""DCT-PGD: a quantisation-aware attack on block-DCT defences (FR, Feature Distillation, JPEG).

A block-DCT quantiser ``round(C / Q) · Q`` (docs/ALGORITHMS.md §2) removes a change of a
coefficient smaller than ``Q / 2`` but keeps a change by a whole multiple of ``Q``
exactly: ``round((C + nQ) / Q) · Q = round(C / Q) · Q + nQ``. DCT-PGD therefore
optimises integer *levels* ``n`` of the 8x8 block-DCT coefficients of the perturbation
(the perturbation is ``idct(n · Q) / 255``), moves them one quantum at a time along the
gradient's sign, and only on the coefficients whose step ``Q`` the budget can reach
(docs/ALGORITHMS.md §4, "DCT-PGD"). After every step the perturbation is projected onto
the pixel-space ball and ``[0, 1]`` and the levels are read back from what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from segshield._checks import check_choice, check_images, check_number, checked_entry
from segshield.attacks.base import Attack, loss_gradient
from segshield.attacks.losses import per_sample_mean, pixel_cross_entropy
from segshield.attacks.pgd import NORMS, _project
from segshield.defenses.base import Defense
from segshield.defenses.dct import block_dct, block_idct, dct_matrix
from segshield.defenses.fr import FrequencyRefinement
from segshield.defenses.jpeg import Jpeg
from segshield.defenses.registry import get_defense
from segshield.defenses.tables import scale_table

__all__ = ["DCTPGD", "dctpgd", "defense_table", "reachable", "reachable_change", "JPEG_LUMA_TABLE"]

#: Grey levels of value 1.0: the scale the block-DCT defences quantise on.
_SCALE = 255.0

#: The JPEG standard's luminance table (ITU T.81, Annex K, table K.1), quality 50.
JPEG_LUMA_TABLE = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float64,
)


def defense_table(defense: Any) -> torch.Tensor:
    """The quantisation table a block-DCT defence applies, ``(8, 8)`` or ``(C, 8, 8)``.

    FR and Feature Distillation give their own table. JPEG gives the standard luminance
    table scaled to its quality (:func:`~segshield.defenses.tables.scale_table`), an
    *approximation*: libjpeg also converts RGB to YCbCr, subsamples chroma and uses a
    coarser chroma table.

    Args:
        defense: a :class:`~segshield.defenses.base.Defense` or a defence spec string
            (``"fr:pd=30,ac=5,gd=60"``, ``"fd"``, ``"jpeg:q=75"``).

    Returns:
        The steps on the 0..255 scale, float64 on the CPU.

    Raises:
        TypeError: ``defense`` is neither a spec string nor a block-DCT defence.

    Example:
        >>> defense_table("fr:pd=30,ac=5,gd=60")[0, 0].item()
        30.0
        >>> defense_table("jpeg:q=50")[0, 0].item()
        16.0
    """
    if isinstance(defense, str):
        defense = get_defense(defense)
    if isinstance(defense, FrequencyRefinement):
        return defense.table.detach().to(torch.float64).cpu()
    if isinstance(defense, Jpeg):
        return scale_table(JPEG_LUMA_TABLE, defense.quality)
    got = defense.spec() if isinstance(defense, Defense) else type(defense).__name__
    raise TypeError(
        f"defense: expected a block-DCT defence (fr, fd or jpeg) or its spec string, got "
        f"{got}; DCT-PGD attacks a quantisation table"
    )


def reachable(table: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Which coefficients a budget-``eps`` perturbation can move by a whole step ``Q``.

    The largest change of coefficient ``(u, v)`` of one block, on the 0..255 scale, is
    ``255 · eps · s_u · s_v`` with ``s_u = Σ_i |D[u, i]|`` under L-inf (each pixel moves
    by the sign of the basis function; ``s_0 · s_0 = 8``) and ``255 · eps`` under L2 (the
    whole budget on one orthonormal basis function). A coefficient is *reachable* when
    ``0 < Q(u, v) <= reach(u, v)``: only then can a change inside the budget survive
    ``round(C / Q) · Q`` as a change by ``Q``. (A step of 0 is not quantised at all and
    left out: the defences here have none.)

    Args:
        table: steps ``(8, 8)`` or ``(C, 8, 8)`` on the 0..255 scale.
        eps: budget on the ``[0, 1]`` scale, > 0.
        norm: ``"linf"`` or ``"l2"``.

    Returns:
        A bool tensor shaped like ``table``.

    Example:
        >>> t = torch.tensor([[30.0] * 8] * 8)
        >>> int(reachable(t, 4 / 255, "linf").sum()), int(reachable(t, 8 / 255, "linf").sum())
        (4, 64)
    """
    check_number("eps", eps, low=0.0, low_inclusive=False)
    table = torch.as_tensor(table, dtype=torch.float64)
    return (table > 0) & (table <= eps * reachable_change(norm) * (1 + 1e-9))


def reachable_change(norm: str) -> torch.Tensor:
    """``(8, 8)``: the largest change of each coefficient (0..255 scale) per unit of eps.

    ``255 · s_u · s_v`` with ``s_u = Σ_i |D[u, i]|`` for ``"linf"``, 255 for ``"l2"``
    (see :func:`reachable`).

    Example:
        >>> round(float(reachable_change("linf")[0, 0]), 6)
        2040.0
    """
    check_choice("norm", norm, NORMS)
    if norm == "linf":
        s = dct_matrix(8).abs().sum(1)
        return _SCALE * torch.outer(s, s)
    return torch.full((8, 8), _SCALE, dtype=torch.float64)


def _levels_to_image(levels: torch.Tensor, q: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return block_idct(levels * q)[..., :h, :w] / _SCALE


def _image_to_levels(delta: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    h, w = delta.shape[-2:]
    padded = F.pad(delta, (0, -w % 8, 0, -h % 8))
    c = block_dct(padded * _SCALE)
    return torch.where(mask, torch.round(c / q.clamp_min(1e-12)), torch.zeros_like(c))


def _linf_move(gc: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One quantum, per block, on the reachable coefficient of largest gain ``|g| · Q``."""
    score = torch.where(mask, gc.abs() * q, torch.zeros_like(gc)).flatten(-2)
    best = score.argmax(-1, keepdim=True)
    pick = torch.zeros_like(score).scatter_(-1, best, 1.0) * (score.gather(-1, best) > 0)
    return pick.view_as(gc) * gc.sign()


def _l2_move(
    gc: torch.Tensor, q: torch.Tensor, mask: torch.Tensor, levels: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per sample, the quanta of largest gain per energy ``|g| / Q`` that fit the budget."""
    b = gc.shape[0]
    step = torch.where(mask, gc.sign(), torch.zeros_like(gc))
    qb = q.expand_as(gc)
    cost = (((levels + step) * qb) ** 2 - (levels * qb) ** 2).flatten(1)
    score = torch.where(mask, gc.abs() / qb.clamp_min(1e-12), torch.zeros_like(gc)).flatten(1)
    order = score.argsort(dim=1, descending=True, stable=True)
    spare = (_SCALE * eps) ** 2 - (levels * qb).flatten(1).pow(2).sum(1, keepdim=True)
    fits = (cost.gather(1, order).cumsum(1) <= spare) & (score.gather(1, order) > 0)
    fits = fits.cummin(1).values  # a prefix of the ranking
    take = torch.zeros_like(score).scatter_(1, order, fits.to(score.dtype))
    return take.view(b, *gc.shape[1:]) * step


@checked_entry("images")
def dctpgd(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    table: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    eps: float = 8 / 255,
    steps: int = 10,
    norm: str = "linf",
) -> torch.Tensor:
    """Run DCT-PGD (the pure function behind :class:`DCTPGD`; docs/ALGORITHMS.md §4).

    Args:
        model: returns logits ``(B, K, H, W)`` (a ``Defended`` model for an adaptive
            attack).
        images: ``(B, C, H, W)`` clean images in ``[0, 1]``.
        labels: ground truth ``(B, H, W)``, 255 ignored.
        table: the defence's steps ``(8, 8)`` or ``(C, 8, 8)`` on the 0..255 scale.
        target: target labels for a targeted attack, or None (untargeted).
        eps: budget on the ``[0, 1]`` scale (> 0). Default 8/255.
        steps: iterations (>= 1). Default 10.
        norm: ``"linf"`` or ``"l2"``.

    Returns:
        ``(B, C, H, W)`` adversarial images in ``[0, 1]`` within ``eps`` of ``images``.

    Raises:
        ValueError: no coefficient is reachable at this ``eps`` (the message gives the
            smallest budget that reaches one).

    Example:
        >>> model = torch.nn.Conv2d(1, 2, 1)
        >>> x = torch.rand(1, 1, 8, 8); y = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> adv = dctpgd(model, x, y, torch.full((8, 8), 5.0), eps=4 / 255, steps=2)
        >>> bool((adv - x).abs().max() <= 4 / 255 + 1e-6)
        True
    """
    check_images(images)
    check_number("steps", steps, low=1, integer=True)
    table = torch.as_tensor(table, dtype=torch.float64)
    mask = reachable(table, eps, norm)
    if not bool(mask.any()):
        per_eps = reachable_change(norm)  # change per unit of eps
        need = float((table / per_eps)[table > 0].min())
        raise ValueError(
            f"eps: no quantisation step of the table is reachable at eps={eps:.6g} ({norm}); "
            f"the smallest step needs eps >= {need:.6g}"
        )
    x0 = images.detach()
    h, w = x0.shape[-2:]
    lead = (1, table.shape[0] if table.ndim == 3 else 1, 1, 1)
    q = table.to(device=x0.device, dtype=x0.dtype).view(*lead, 8, 8)
    mask = mask.to(x0.device).view(*lead, 8, 8)
    ref = labels if target is None else target
    sign = 1.0 if target is None else -1.0
    levels = _image_to_levels(torch.zeros_like(x0), q, mask)
    x = x0
    for _ in range(steps):
        grad, _ = loss_gradient(
            model, x, lambda lg, _x: sign * per_sample_mean(pixel_cross_entropy(lg, ref), ref)
        )
        gc = block_dct(F.pad(grad, (0, -w % 8, 0, -h % 8)))
        if norm == "linf":
            levels = levels + _linf_move(gc, q, mask)
        else:
            levels = levels + _l2_move(gc, q, mask, levels, eps)
        delta = _project(_levels_to_image(levels, q, h, w), eps, norm)
        x = (x0 + delta).clamp(0, 1).detach()
        levels = _image_to_levels(x - x0, q, mask)
    return x


class DCTPGD(Attack):
    """DCT-PGD: perturb only what a block-DCT quantiser keeps (docs/ALGORITHMS.md §4).

    Untargeted: maximise the mean per-pixel cross-entropy with the ground truth (or the
    clean prediction); targeted: minimise it with ``target_masks``, as PGD. The
    perturbation lives on the reachable coefficients of the defence's table
    (:func:`reachable`) and moves by whole steps ``Q``; see :func:`dctpgd`.

    Args:
        eps: budget on the ``[0, 1]`` scale, > 0. Default 8/255.
        steps: iterations, >= 1. Default 10.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        defense: the defence whose table is attacked: a spec string (``"fr"``,
            ``"fd"``, ``"jpeg:q=75"``) or a defence object; None (default) takes it from
            a ``Defended(model, defense)`` model. JPEG uses the scaled luminance table,
            an approximation (:func:`defense_table`).
        seed: seed of a grid-shift EOT model (``Defended(..., eot="grid-shift")``),
            reseeded at every call so that a call repeats; >= 0. Default 0.

    Shape:
        images ``(B, C, H, W)``; masks, target_masks ``(B, H, W)``.

    Returns:
        ``AttackResult``.

    Raises:
        TypeError, ValueError: bad settings, or no table (a bare model and no
            ``defense``).

    Example:
        >>> from segshield.attacks import Defended
        >>> from segshield.defenses import get_defense
        >>> model = Defended(torch.nn.Conv2d(1, 2, 1), get_defense("fr"))
        >>> x = torch.rand(1, 1, 16, 16)
        >>> r = DCTPGD(eps=8 / 255, steps=2)(model, x)
        >>> bool((r.adversarial - x).abs().max() <= 8 / 255 + 1e-6)
        True
    """

    name = "dctpgd"

    def __init__(
        self,
        eps: float = 8 / 255,
        steps: int = 10,
        norm: str = "linf",
        defense: Any = None,
        seed: int = 0,
    ) -> None:
        self.eps = float(check_number("eps", eps, low=0.0, low_inclusive=False))
        self.steps = int(check_number("steps", steps, low=1, integer=True))
        self.norm = check_choice("norm", norm, NORMS)
        self.table = None if defense is None else defense_table(defense)
        self.defense = defense.spec() if isinstance(defense, Defense) else defense
        self.seed = int(check_number("seed", seed, low=0, integer=True))

    def applies_to(self, defense: Any) -> bool:
        """Only through a block-DCT defence (FR, FD, JPEG): the attack reads its table.

        Example:
            >>> from segshield.defenses import get_defense
            >>> [DCTPGD().applies_to(get_defense(s)) for s in ("fd", "jpeg:q=75", "none")]
            [True, True, False]
        """
        return isinstance(defense, FrequencyRefinement | Jpeg)

    def _table(self, model: Any) -> torch.Tensor:
        if self.table is not None:
            return self.table
        inner = getattr(model, "defense", None) if getattr(model, "is_defended", False) else None
        if inner is None:
            raise ValueError(
                "defense: dctpgd needs the quantisation table it attacks; pass a "
                "Defended(model, defense) model or DCTPGD(defense='fr:pd=30,ac=5,gd=60')"
            )
        return defense_table(inner)

    def _run(self, model, images, labels, target, classifier):
        table = self._table(model)
        reseed = getattr(model, "reseed", None)
        if callable(reseed):
            reseed(self.seed)
        adv = dctpgd(
            model, images, labels, table, target=target, eps=self.eps, steps=self.steps,
            norm=self.norm,
        )  # fmt: skip
        return adv, torch.full((images.shape[0],), self.steps, dtype=torch.long)
