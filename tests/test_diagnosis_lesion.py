"""Lesion measures on hand-built masks with known values (rectangles, discs, ellipses, L)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from segshield.diagnosis import (
    asymmetry,
    compactness,
    feret_diameter,
    lesion_area,
    lesion_measures,
)


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _ellipse(h: int, w: int, cy: float, cx: float, a: float, b: float, theta: float = 0.0):
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    dy, dx = yy - cy, xx - cx
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def _l_shape(n: int = 40, arm: int = 10, size: int = 64) -> torch.Tensor:
    m = torch.zeros(size, size, dtype=torch.bool)
    m[10 : 10 + n, 10 : 10 + arm] = True  # vertical arm
    m[10 + n - arm : 10 + n, 10 : 10 + n] = True  # horizontal arm
    return m


def _brute_feret(mask: np.ndarray) -> float:
    """Reference: largest distance between any two corners of any two lesion pixels."""
    ys, xs = np.nonzero(mask)
    corners = np.array(
        [
            (y + dy, x + dx)
            for y, x in zip(ys, xs, strict=True)
            for dy, dx in itertools.product((0, 1), (0, 1))
        ],
        dtype=float,
    )
    d = np.sqrt(((corners[:, None, :] - corners[None, :, :]) ** 2).sum(-1))
    return float(d.max())


def test_rectangle_area_fraction_and_diameter():
    m = torch.zeros(40, 50, dtype=torch.long)
    m[5:17, 3:12] = 1  # 12 x 9
    out = lesion_measures(m)
    assert int(out["area"]) == 108
    assert float(out["area_fraction"]) == pytest.approx(108 / 2000)
    assert float(out["diameter"]) == pytest.approx(15.0)  # sqrt(12^2 + 9^2)
    assert float(out["asymmetry"]) == 0.0
    assert float(out["asymmetry_major"]) == 0.0 and float(out["asymmetry_minor"]) == 0.0


def test_single_pixel_diameter_is_sqrt2():
    m = torch.zeros(5, 5, dtype=torch.bool)
    m[2, 3] = True
    assert float(feret_diameter(m)) == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feret_matches_brute_force_on_random_blobs(seed):
    gen = torch.Generator().manual_seed(seed)
    m = torch.rand(14, 12, generator=gen) > 0.8
    assert float(feret_diameter(m)) == pytest.approx(_brute_feret(m.numpy()))


def test_disc_measures_close_to_continuous_values():
    r = 30
    m = _disc(80, 80, 40, 40, r)
    out = lesion_measures(m)
    assert float(out["area"]) == pytest.approx(math.pi * r**2, rel=0.01)
    assert float(out["diameter"]) == pytest.approx(2 * r + 1, abs=1.0)
    assert float(out["asymmetry"]) == pytest.approx(0.0, abs=1e-9)
    assert float(out["compactness"]) == pytest.approx(1.0, abs=0.03)


def test_square_compactness_hand_computed():
    n = 40
    m = torch.zeros(60, 60, dtype=torch.bool)
    m[10 : 10 + n, 10 : 10 + n] = True
    # Crofton, 4 directions: 2n transitions horizontally and vertically, 2(2n-1) per diagonal
    per = math.pi / 8 * (4 * n + 4 * (2 * n - 1) / math.sqrt(2))
    out = compactness(m)
    assert float(out["perimeter"]) == pytest.approx(per)
    assert float(out["compactness"]) == pytest.approx(per**2 / (4 * math.pi * n * n))


def test_compactness_grows_with_border_irregularity():
    disc = _disc(80, 80, 40, 40, 25)
    star = disc.clone()
    yy, xx = torch.meshgrid(torch.arange(80), torch.arange(80), indexing="ij")
    angle = torch.atan2((yy - 40).double(), (xx - 40).double())
    radius = ((yy - 40) ** 2 + (xx - 40) ** 2).double().sqrt()
    star = radius <= 25 * (0.7 + 0.3 * torch.cos(8 * angle))
    c = compactness(torch.stack([disc, _ellipse(80, 80, 40, 40, 30, 10), star]))["compactness"]
    assert c[0] < c[1] < c[2]
    assert c[2] > 1.5


def test_ellipse_axis_aligned_and_rotated_is_symmetric_diameter_is_major_axis():
    a, b = 25.0, 10.0
    m = _ellipse(80, 80, 40, 40, a, b)
    out = lesion_measures(m)
    assert float(out["diameter"]) == pytest.approx(2 * a + 1, abs=1.0)
    assert float(out["asymmetry"]) == 0.0
    rot = _ellipse(80, 80, 40, 40, a, b, theta=math.pi / 6)
    out_r = lesion_measures(rot)
    assert float(out_r["asymmetry"]) < 0.05  # rounding of mirrored pixel centres only
    assert float(out_r["diameter"]) == pytest.approx(2 * a + 1, abs=1.5)
    assert float(out_r["area"]) == pytest.approx(math.pi * a * b, rel=0.02)


def _ref_reflection_mismatch(mask: np.ndarray, axis: np.ndarray) -> float:
    """Reference: fraction of lesion pixels whose mirror about ``axis`` is not lesion."""
    pts = np.argwhere(mask).astype(float)
    c = pts.mean(0)
    e = axis / np.linalg.norm(axis)
    hits = 0
    for p in pts:
        d = p - c
        q = c + 2 * (d @ e) * e - d
        qi = np.rint(q).astype(int)
        if 0 <= qi[0] < mask.shape[0] and 0 <= qi[1] < mask.shape[1] and mask[qi[0], qi[1]]:
            hits += 1
    return 1 - hits / len(pts)


def test_l_shape_symmetric_about_diagonal_only():
    m = _l_shape()
    out = asymmetry(m)
    # Equal arms: the L is its own mirror about the diagonal through the corner.
    a_major, a_minor = float(out["asymmetry_major"]), float(out["asymmetry_minor"])
    values = sorted([a_major, a_minor])
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    # corner at bottom-left: the symmetry axis runs up-right, (dy, dx) = (1, -1)
    diag = _ref_reflection_mismatch(m.numpy(), np.array([1.0, -1.0]))
    anti = _ref_reflection_mismatch(m.numpy(), np.array([1.0, 1.0]))
    assert diag == pytest.approx(0.0, abs=1e-12)
    assert values[1] == pytest.approx(anti)
    assert values[1] > 0.3
    assert float(out["asymmetry"]) == pytest.approx((a_major + a_minor) / 2)


def test_l_shape_area_diameter_and_compactness_by_hand():
    n, arm = 40, 10
    m = _l_shape(n, arm)
    out = lesion_measures(m)
    assert int(out["area"]) == 2 * n * arm - arm * arm
    # farthest corners: top-right of the vertical arm's top and the horizontal arm's end
    far = max(math.hypot(n, arm), math.hypot(n, n - arm), math.hypot(n - arm, n))
    assert float(out["diameter"]) == pytest.approx(math.hypot(n, n))  # outer corner to corner
    assert float(out["diameter"]) >= far
    sq = torch.zeros_like(m)
    sq[10 : 10 + n, 10 : 10 + n] = True
    assert float(out["compactness"]) > float(compactness(sq)["compactness"])


def test_asymmetry_of_asymmetric_shape_matches_reference_on_principal_axes():
    m = torch.zeros(40, 40, dtype=torch.bool)
    m[5:30, 5:12] = True
    m[5:12, 12:25] = True
    m[20:24, 12:16] = True
    out = asymmetry(m)
    pts = np.argwhere(m.numpy()).astype(float)
    cov = np.cov((pts - pts.mean(0)).T, bias=True)
    _, vecs = np.linalg.eigh(cov)
    assert float(out["asymmetry_major"]) == pytest.approx(
        _ref_reflection_mismatch(m.numpy(), vecs[:, 1])
    )
    assert float(out["asymmetry_minor"]) == pytest.approx(
        _ref_reflection_mismatch(m.numpy(), vecs[:, 0])
    )
    assert 0 < float(out["asymmetry"]) <= 1


def test_empty_mask_values():
    m = torch.zeros(2, 10, 10, dtype=torch.long)
    m[1, 2:4, 2:4] = 1
    out = lesion_measures(m)
    assert out["area"].tolist() == [0, 4]
    assert out["diameter"][0].item() == 0.0
    assert math.isnan(out["asymmetry"][0].item())
    assert math.isnan(out["compactness"][0].item())
    assert not math.isnan(out["compactness"][1].item())


def test_ignore_index_and_classes():
    m = torch.zeros(10, 10, dtype=torch.long)
    m[:5] = 255
    m[6, 0:5] = 1
    m[8, 0:5] = 3
    area = lesion_area(m)
    assert int(area["area"]) == 5
    assert float(area["area_fraction"]) == pytest.approx(5 / 50)
    assert int(lesion_area(m, classes=(1, 3))["area"]) == 10
    m[:] = 255
    assert math.isnan(float(lesion_area(m)["area_fraction"]))


def test_numpy_in_numpy_out_and_batch_equals_single():
    masks = torch.stack([_disc(40, 40, 20, 20, 8), _l_shape(20, 6, 40)])
    batch = lesion_measures(masks)
    for i in range(2):
        single = lesion_measures(masks[i].numpy())
        for k, v in single.items():
            assert isinstance(v, (np.generic, float, int)), k
            assert float(v) == pytest.approx(float(batch[k][i])), k


def test_lesion_measures_errors():
    with pytest.raises(TypeError, match="mask: expected a boolean or integer mask"):
        lesion_measures(torch.rand(5, 5))
    with pytest.raises(ValueError, match="mask: expected shape"):
        lesion_measures(torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="mask"):
        lesion_measures("mask.png")
    with pytest.raises(ValueError, match="ignore index"):
        lesion_area(torch.zeros(3, 3, dtype=torch.long), classes=(255,))
