"""Frequency analysis and batched multi-table FR (segshield.tuning)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.fft
import torch

from segshield.defenses.fr import FrequencyRefinement
from segshield.tuning import (
    analysis_html,
    apply_tables,
    coefficient_energy,
    frequency_analysis,
    single_coefficient_tables,
)
from segshield.tuning.html import MAP_TITLES


def _blocks_dct_ref(x: np.ndarray, pad: str = "edge") -> np.ndarray:
    """Reference block DCT on the 0..255 scale: (B, C, nh, nw, 8, 8) with scipy."""
    b, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    mode = "edge" if pad == "edge" else "constant"
    xp = np.pad(x * 255.0, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
    nh, nw = xp.shape[2] // 8, xp.shape[3] // 8
    out = np.empty((b, c, nh, nw, 8, 8))
    for i in range(nh):
        for j in range(nw):
            block = xp[:, :, 8 * i : 8 * i + 8, 8 * j : 8 * j + 8]
            out[:, :, i, j] = scipy.fft.dctn(block, type=2, norm="ortho", axes=(-2, -1))
    return out


class ThresholdModel(torch.nn.Module):
    """Pixel-wise binary model: logit = 20 * (channel mean - 0.5)."""

    def forward(self, x):
        return 20.0 * (x.mean(1, keepdim=True) - 0.5)


def _dice_ref(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean foreground Dice over samples (docs/ALGORITHMS.md §5 empty rule: both empty -> 1)."""
    out = []
    for p, g in zip(pred, gt, strict=True):
        tp = np.sum((p == 1) & (g == 1))
        den = np.sum(p == 1) + np.sum(g == 1)
        out.append(1.0 if den == 0 else 2 * tp / den)
    return float(np.mean(out))


def _blobs(n=4, size=16, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    imgs, masks = [], []
    for _ in range(n):
        cy, cx = torch.randint(4, size - 4, (2,), generator=g).tolist()
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 4) ** 2).float()
        base = 0.3 + 0.4 * disk + 0.05 * torch.rand(size, size, generator=g)
        imgs.append(base.expand(channels, size, size))
        masks.append(disk.long())
    x = torch.stack(imgs).contiguous()
    checker = ((yy + xx) % 2 * 2 - 1).float() * 0.25
    adv = (x + checker).clamp(0, 1)
    return x, torch.stack(masks), adv


# -- energies ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape, pad", [((2, 2, 16, 24), "edge"), ((1, 3, 13, 10), "zero")])
def test_coefficient_energy_matches_scipy_per_block(shape, pad):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = (_blocks_dct_ref(x.numpy(), pad) ** 2).mean(axis=(0, 2, 3))
    got = coefficient_energy(x, pad).numpy()
    assert got.shape == (shape[1], 8, 8)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-6)


def test_analysis_energies_and_ratios_match_reference():
    x, m, adv = _blobs(n=3, size=16, channels=2)
    res = frequency_analysis(ThresholdModel(), x, m, adv, step=20)
    clean = (_blocks_dct_ref(x.double().numpy()) ** 2).mean(axis=(0, 2, 3))
    pert = (_blocks_dct_ref((adv - x).double().numpy()) ** 2).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(res.clean_energy.numpy(), clean, rtol=1e-5)
    np.testing.assert_allclose(res.perturbation_energy.numpy(), pert, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(res.energy_ratio.numpy(), pert / clean, rtol=1e-4, atol=1e-9)
    cp, pp = clean.mean(0), pert.mean(0)
    np.testing.assert_allclose(res.energy_ratio_pooled.numpy(), pp / cp, rtol=1e-4, atol=1e-9)
    rel = (pp / pp.sum()) / (cp / cp.sum())
    np.testing.assert_allclose(res.relative_ratio.numpy(), rel, rtol=1e-4, atol=1e-9)
    # The checkerboard lives at the highest frequency (7, 7).
    assert int(res.relative_ratio.flatten().nan_to_num(-1).argmax()) == 63


def test_sensitivity_matches_independent_single_coefficient_quantisation():
    x, m, adv = _blobs(n=4, size=16)
    model = ThresholdModel()
    step = 40.0
    res = frequency_analysis(model, x, m, adv, step=step)

    def quantise_only(images, u, v):
        c = _blocks_dct_ref(images.double().numpy())
        c[..., u, v] = np.round(c[..., u, v] / step) * step
        b, ch, nh, nw = c.shape[:4]
        blocks = scipy.fft.idctn(c, type=2, norm="ortho", axes=(-2, -1))
        img = blocks.transpose(0, 1, 2, 4, 3, 5).reshape(b, ch, nh * 8, nw * 8)
        return np.clip(img, 0, 255) / 255.0

    def pred(images):
        return (images.mean(1) > 0.5).astype(int)

    gt = m.numpy()
    clean_d = _dice_ref(pred(x.numpy()), gt)
    adv_d = _dice_ref(pred(adv.numpy()), gt)
    assert res.clean_dice == pytest.approx(clean_d)
    assert res.adversarial_dice == pytest.approx(adv_d)
    for u, v in [(0, 0), (1, 2), (7, 7)]:
        drop = clean_d - _dice_ref(pred(quantise_only(x, u, v)), gt)
        gain = _dice_ref(pred(quantise_only(adv, u, v)), gt) - adv_d
        assert res.benign_drop[u, v].item() == pytest.approx(drop, abs=1e-9)
        assert res.recovered_gain[u, v].item() == pytest.approx(gain, abs=1e-9)
    # The checkerboard perturbation is concentrated at (7, 7): quantising it helps.
    assert res.recovered_gain[7, 7] > 0


def test_frequency_analysis_errors():
    x, m, adv = _blobs(n=2, size=16)
    with pytest.raises(ValueError, match="adversarial: expected the shape"):
        frequency_analysis(ThresholdModel(), x, m, adv[:1])
    with pytest.raises(ValueError, match="step"):
        frequency_analysis(ThresholdModel(), x, m, adv, step=0)
    with pytest.raises(ValueError, match="masks"):
        frequency_analysis(ThresholdModel(), x, m[:, :8], adv)
    with pytest.raises(ValueError, match="pad"):
        frequency_analysis(ThresholdModel(), x, m, adv, pad="crop")


# -- batched quantisation -----------------------------------------------------------------


@pytest.mark.parametrize("u, v", [(0, 0), (2, 5), (7, 7)])
def test_single_coefficient_quantisation_touches_only_that_coefficient(u, v):
    x = 0.35 + 0.3 * torch.rand(2, 3, 16, 24, dtype=torch.float64)
    step = 25.0
    tables = single_coefficient_tables(step, channels=3)
    out = apply_tables(x, tables[8 * u + v : 8 * u + v + 1])[0]
    before = _blocks_dct_ref(x.numpy())
    after = _blocks_dct_ref(out.numpy())
    diff = np.abs(after - before)
    others = np.ones((8, 8), bool)
    others[u, v] = False
    assert diff[..., others].max() < 1e-8
    np.testing.assert_allclose(
        after[..., u, v], np.round(before[..., u, v] / step) * step, atol=1e-8
    )
    assert diff[..., u, v].max() > 0.1  # something was quantised


def test_single_coefficient_tables_layout_and_errors():
    t = single_coefficient_tables(12.0)
    assert t.shape == (64, 8, 8)
    for k in range(64):
        nz = torch.nonzero(t[k])
        assert nz.tolist() == [[k // 8, k % 8]] and t[k, k // 8, k % 8] == 12.0
    assert single_coefficient_tables(5.0, channels=2).shape == (64, 2, 8, 8)
    with pytest.raises(ValueError, match="step"):
        single_coefficient_tables(0.0)
    with pytest.raises(ValueError, match="channels"):
        single_coefficient_tables(3.0, channels=0)


@pytest.mark.parametrize("pad", ["edge", "zero"])
def test_apply_tables_equals_frequency_refinement(device, pad):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 20, 28, generator=g).to(device)
    tables = 1 + 60 * torch.rand(3, 8, 8, generator=g)
    per_channel = 1 + 60 * torch.rand(1, 3, 8, 8, generator=g)
    got = apply_tables(x, tables, pad=pad)
    got_pc = apply_tables(x, per_channel, pad=pad)[0]
    for i in range(3):
        want = FrequencyRefinement.from_table(tables[i].double(), pad=pad).to(device)(x)
        # Float rounding ties may differ in a handful of coefficients only.
        close = (got[i] - want).abs() < 1e-4
        assert close.float().mean() > 0.999
    want_pc = FrequencyRefinement.from_table(per_channel[0].double(), pad=pad).to(device)(x)
    assert ((got_pc - want_pc).abs() < 1e-4).float().mean() > 0.999
    assert got.device == x.device and got.dtype == x.dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pad", ["edge", "zero"])
def test_apply_tables_is_deployed_fr_bit_for_bit(device, pad, dtype):
    # The tuner scores a table on exactly the numbers the shipped FR gives (same code,
    # same compute dtype): no rounding-tie tolerance.
    g = torch.Generator().manual_seed(5)
    for shape in ((2, 3, 21, 30), (3, 1, 16, 40)):
        x = torch.rand(shape, generator=g).to(device=device, dtype=dtype)
        tables = 1 + 60 * torch.rand(5, 8, 8, generator=g)
        per_channel = 1 + 60 * torch.rand(2, shape[1], 8, 8, generator=g, dtype=torch.float64)
        for batch, clip in ((tables, True), (per_channel, False)):
            got = apply_tables(x, batch, pad=pad, clip=clip)
            for i, t in enumerate(batch):
                fr = FrequencyRefinement.from_table(t, pad=pad, clip=clip)
                assert torch.equal(got[i], fr(x))


def test_apply_tables_zero_steps_are_identity_and_idempotent_without_clip():
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    assert torch.allclose(apply_tables(x, torch.zeros(1, 8, 8, dtype=torch.float64))[0], x)
    t = torch.full((1, 8, 8), 16.0, dtype=torch.float64)
    once = apply_tables(x, t, clip=False)[0]
    # Unclipped output may leave [0, 1]; FR is idempotent on it (docs/ALGORITHMS.md §2).
    coeffs_twice = _blocks_dct_ref(once.numpy())
    np.testing.assert_allclose(coeffs_twice / 16.0, np.round(coeffs_twice / 16.0), atol=1e-6)


def test_apply_tables_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="steps >= 0"):
        apply_tables(x, -torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match=r"\(V, 8, 8\)"):
        apply_tables(x, torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="one per image channel"):
        apply_tables(x, torch.ones(1, 2, 8, 8))
    with pytest.raises(TypeError, match="float tensor"):
        apply_tables(x, torch.ones(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="pad"):
        apply_tables(x, torch.ones(1, 8, 8), pad="crop")
    with pytest.raises(TypeError):
        apply_tables(x.numpy(), torch.ones(1, 8, 8))


# -- report fragment ----------------------------------------------------------------------


def test_analysis_html_from_result_and_from_json():
    x, m, adv = _blobs(n=2, size=16)
    res = frequency_analysis(ThresholdModel(), x, m, adv, step=30)
    html = analysis_html(res)
    assert html.startswith("<section") and html.rstrip().endswith("</section>")
    assert html.count("data:image/png;base64,") == len(MAP_TITLES)
    # Strict JSON (no NaN) round trip renders the same section.
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert analysis_html(data) == html
    with pytest.raises(TypeError, match="result"):
        analysis_html(42)
