"""Shape measures of a skin lesion mask: area, maximum diameter, asymmetry, border.

These are the computable parts of the dermoscopic ABCD rule (Stolz et al., 1994:
Asymmetry, Border, Colour, Diameter) in the form used by automated dermoscopy systems
(e.g. Celebi et al., Comput Med Imaging Graph 2007):

- **area**: lesion pixels, and the fraction of the (non-ignored) image they cover.
- **diameter**: maximum Feret diameter, the largest distance between two points of the
  lesion, where each pixel is the unit square around its centre (a ``w x h`` rectangle
  gives ``sqrt(w^2 + h^2)``, one pixel gives ``sqrt(2)``).
- **asymmetry**: the mask is reflected about each of its two principal axes (the
  eigenvectors of the pixel-coordinate covariance) through its centroid; the asymmetry
  about one axis is the fraction of lesion pixels whose mirror image (rounded to the
  nearest pixel) is not lesion, ``|M minus R(M)| / |M|``, in ``[0, 1]`` (0 = symmetric).
  ``asymmetry`` is the mean over the two axes; ``asymmetry_major`` and
  ``asymmetry_minor`` are reported too. Circles give ~0, an L-shape is symmetric about
  its diagonal only.
- **compactness** (border irregularity): ``P^2 / (4 pi A)``, about 1 for a disc and
  larger for irregular borders, with ``A`` the pixel count and ``P`` the Cauchy-Crofton
  perimeter estimate over four directions (Legland et al., 2007), which is unbiased for
  a digital disc (pixel-edge counts overestimate it by 4/pi).

All measures treat the lesion as one set of pixels (several components are measured
together). An empty lesion gives area 0, diameter 0, and NaN asymmetry and compactness.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from segshield.diagnosis._masks import as_batch, region, restore
from segshield.metrics.segmentation import IGNORE_INDEX

__all__ = [
    "lesion_measures",
    "lesion_area",
    "feret_diameter",
    "asymmetry",
    "compactness",
    "LESION",
]

#: Class ids forming the lesion in a binary lesion mask.
LESION: tuple[int, ...] = (1,)


def _lesion(mask: Any, classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    m, was_numpy, single = as_batch(mask, "mask")
    valid = torch.ones_like(m, dtype=torch.bool) if m.dtype == torch.bool else m != IGNORE_INDEX
    return region(m, classes), valid, was_numpy, single


def lesion_area(mask: Any, classes: tuple[int, ...] = LESION) -> dict[str, Any]:
    """Lesion area in pixels and as a fraction of the non-ignored pixels.

    Args:
        mask: boolean mask or integer class ids ``(H, W)`` or ``(B, H, W)`` (tensor or
            numpy); 255 pixels are ignored.
        classes: class ids forming the lesion in an integer mask. Default ``(1,)``.

    Returns:
        ``{"area": int64, "area_fraction": float64}``, scalars for ``(H, W)`` and ``(B,)``
        for a batch; ``area_fraction`` is NaN when every pixel is ignored.

    Raises:
        TypeError: floating-point or non-array input.
        ValueError: not 2-D or 3-D.

    Example:
        >>> m = torch.zeros(10, 10, dtype=torch.long); m[:5, :2] = 1
        >>> float(lesion_area(m)["area_fraction"])
        0.1
    """
    les, valid, was_numpy, single = _lesion(mask, classes)
    area = les.flatten(1).sum(-1)
    n = (valid.flatten(1).sum(-1)).double()
    frac = torch.where(n > 0, area.double() / n.clamp_min(1), torch.full_like(n, float("nan")))
    return {
        "area": restore(area, was_numpy, single),
        "area_fraction": restore(frac, was_numpy, single),
    }


def _feret_one(m: torch.Tensor) -> torch.Tensor:
    """Maximum Feret diameter of one ``(H, W)`` boolean mask, pixels as unit squares."""
    rows = m.any(dim=-1).nonzero().flatten()
    if rows.numel() == 0:
        return torch.zeros((), dtype=torch.float64, device=m.device)
    w = m.shape[-1]
    idx = torch.arange(w, device=m.device)
    sub = m[rows]
    left = torch.where(sub, idx, w).amin(-1).double()
    right = torch.where(sub, idx, -1).amax(-1).double() + 1.0
    y = rows.double()
    # Hull vertices of the union of unit squares are corners of the row extremes.
    xs = torch.cat([left, left, right, right])
    ys = torch.cat([y, y + 1.0, y, y + 1.0])
    pts = torch.stack([ys, xs], dim=-1)
    return torch.cdist(pts, pts).amax()


def feret_diameter(mask: Any, classes: tuple[int, ...] = LESION) -> Any:
    """Maximum Feret diameter (pixels), each pixel taken as the unit square at its centre.

    Args:
        mask: boolean mask or integer class ids ``(H, W)`` or ``(B, H, W)``.
        classes: class ids forming the lesion in an integer mask. Default ``(1,)``.

    Returns:
        float64, scalar or ``(B,)``; 0 for an empty mask.

    Raises:
        TypeError: floating-point or non-array input.
        ValueError: not 2-D or 3-D.

    Example:
        >>> m = torch.zeros(10, 10, dtype=torch.bool); m[1:4, 1:5] = True
        >>> float(feret_diameter(m))
        5.0
    """
    les, _, was_numpy, single = _lesion(mask, classes)
    out = torch.stack([_feret_one(x) for x in les])
    return restore(out, was_numpy, single)


def _asymmetry_one(m: torch.Tensor) -> torch.Tensor:
    """``(major, minor)`` asymmetry of one ``(H, W)`` boolean mask; NaN when empty."""
    pts = m.nonzero().double()  # (N, 2) as (y, x)
    if pts.shape[0] == 0:
        return torch.full((2,), float("nan"), dtype=torch.float64, device=m.device)
    c = pts.mean(0)
    d = pts - c
    cov = d.T @ d / pts.shape[0]
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues: column 1 = major axis
    h, w = m.shape
    out = []
    for k in (1, 0):
        e = vecs[:, k]
        refl = 2.0 * (d @ e).unsqueeze(-1) * e - d + c  # mirror image about the axis
        q = torch.round(refl).long()
        inside = (q[:, 0] >= 0) & (q[:, 0] < h) & (q[:, 1] >= 0) & (q[:, 1] < w)
        qc = q.clamp_min(0)
        qc = torch.stack([qc[:, 0].clamp_max(h - 1), qc[:, 1].clamp_max(w - 1)], dim=-1)
        hit = inside & m[qc[:, 0], qc[:, 1]]
        out.append(1.0 - hit.double().mean())
    return torch.stack(out)


def asymmetry(mask: Any, classes: tuple[int, ...] = LESION) -> dict[str, Any]:
    """Reflection asymmetry about the principal axes through the centroid (ABCD "A").

    Paper: asymmetry of the ABCD rule of dermoscopy (Stolz et al., 1994), computed as in
    automated systems (Celebi et al., 2007): ``|M minus R(M)| / |M|`` per axis.

    Args:
        mask: boolean mask or integer class ids ``(H, W)`` or ``(B, H, W)``.
        classes: class ids forming the lesion in an integer mask. Default ``(1,)``.

    Returns:
        ``{"asymmetry", "asymmetry_major", "asymmetry_minor"}``, float64 in ``[0, 1]``,
        scalar or ``(B,)``; NaN for an empty mask. ``asymmetry`` is the mean of the two
        axes. For a shape with equal second moments (a square, a disc) the axes are the
        image axes.

    Raises:
        TypeError: floating-point or non-array input.
        ValueError: not 2-D or 3-D.

    Example:
        >>> m = torch.zeros(9, 9, dtype=torch.bool); m[2:7, 1:8] = True
        >>> float(asymmetry(m)["asymmetry"])
        0.0
    """
    les, _, was_numpy, single = _lesion(mask, classes)
    a = torch.stack([_asymmetry_one(x) for x in les])  # (B, 2)
    return {
        "asymmetry": restore(a.mean(-1), was_numpy, single),
        "asymmetry_major": restore(a[:, 0], was_numpy, single),
        "asymmetry_minor": restore(a[:, 1], was_numpy, single),
    }


def compactness(mask: Any, classes: tuple[int, ...] = LESION) -> dict[str, Any]:
    """Border irregularity as the compactness index ``P^2 / (4 pi A)`` (ABCD "B").

    Paper: compactness index of the lesion border (ABCD rule, Stolz et al., 1994; as
    computed in Celebi et al., 2007). ``A`` is the pixel count and ``P`` the
    Cauchy-Crofton perimeter estimate with four directions (Legland et al., Image Anal
    Stereol 2007): ``P = pi/8 * (N_0 + N_90 + (N_45 + N_135) / sqrt(2))`` where
    ``N_d`` counts lesion/background transitions between neighbours in direction ``d``
    (the mask is zero-padded, so lesions touching the image edge are closed along it).

    Args:
        mask: boolean mask or integer class ids ``(H, W)`` or ``(B, H, W)``.
        classes: class ids forming the lesion in an integer mask. Default ``(1,)``.

    Returns:
        ``{"compactness", "perimeter"}`` float64, scalar or ``(B,)``; compactness is NaN
        for an empty mask, about 1 for a disc (within a few per cent), and grows with
        border irregularity (an ``n x n`` square gives about 1.13).

    Raises:
        TypeError: floating-point or non-array input.
        ValueError: not 2-D or 3-D.

    Example:
        >>> yy, xx = torch.meshgrid(torch.arange(101), torch.arange(101), indexing="ij")
        >>> disc = (yy - 50) ** 2 + (xx - 50) ** 2 <= 40**2
        >>> round(float(compactness(disc)["compactness"]), 1)
        1.0
    """
    les, _, was_numpy, single = _lesion(mask, classes)
    p = F.pad(les, (1, 1, 1, 1))
    n0 = (p[:, :, 1:] != p[:, :, :-1]).flatten(1).sum(-1)
    n90 = (p[:, 1:, :] != p[:, :-1, :]).flatten(1).sum(-1)
    n45 = (p[:, 1:, 1:] != p[:, :-1, :-1]).flatten(1).sum(-1)
    n135 = (p[:, 1:, :-1] != p[:, :-1, 1:]).flatten(1).sum(-1)
    per = (math.pi / 8.0) * ((n0 + n90).double() + (n45 + n135).double() / math.sqrt(2.0))
    area = les.flatten(1).sum(-1).double()
    comp = torch.where(
        area > 0, per**2 / (4 * math.pi * area.clamp_min(1)), torch.full_like(area, math.nan)
    )
    return {
        "compactness": restore(comp, was_numpy, single),
        "perimeter": restore(per, was_numpy, single),
    }


def lesion_measures(mask: Any, classes: tuple[int, ...] = LESION) -> dict[str, Any]:
    """All lesion shape measures at once: area, diameter, asymmetry, border (ABCD rule).

    Paper: ABCD rule of dermoscopy (Stolz et al., 1994); definitions in the module
    docstring.

    Args:
        mask: boolean mask or integer class ids ``(H, W)`` or ``(B, H, W)`` (tensor or
            numpy); 255 pixels are ignored.
        classes: class ids forming the lesion in an integer mask. Default ``(1,)``.

    Returns:
        Dict with ``area``, ``area_fraction``, ``diameter``, ``asymmetry``,
        ``asymmetry_major``, ``asymmetry_minor``, ``compactness``, ``perimeter``; scalars
        for ``(H, W)`` input, ``(B,)`` for a batch (numpy for numpy input).

    Raises:
        TypeError: floating-point or non-array input.
        ValueError: not 2-D or 3-D.

    Example:
        >>> m = torch.zeros(20, 20, dtype=torch.long); m[5:8, 4:8] = 1
        >>> out = lesion_measures(m)
        >>> int(out["area"]), float(out["diameter"]), float(out["asymmetry"])
        (12, 5.0, 0.0)
    """
    out: dict[str, Any] = {}
    out.update(lesion_area(mask, classes))
    out["diameter"] = feret_diameter(mask, classes)
    out.update(asymmetry(mask, classes))
    comp = compactness(mask, classes)
    out["compactness"] = comp["compactness"]
    out["perimeter"] = comp["perimeter"]
    return out
