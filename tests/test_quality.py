"""PSNR and SSIM against independent numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from segshield.metrics import psnr, ssim


def _ref_psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    return 10 * np.log10(1.0 / mse)


def _ref_ssim(x: np.ndarray, y: np.ndarray, win: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004 per channel, valid positions, written with scipy correlate2d."""
    ax = np.arange(win) - (win - 1) / 2
    g1 = np.exp(-(ax**2) / (2 * sigma**2))
    k = np.outer(g1, g1)
    k /= k.sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(x.shape[0]):
        a, b = x[ch].astype(np.float64), y[ch].astype(np.float64)

        def f(t, k=k):
            return correlate2d(t, k, mode="valid")

        ma, mb = f(a), f(b)
        va, vb, cov = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
        s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
        vals.append(s)
    return float(np.mean(vals))


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 1, 23, 17)])
def test_psnr_ssim_match_reference(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=g)
    y = (x + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    got_p, got_s = psnr(x, y), ssim(x, y)
    assert got_p.shape == (shape[0],) and got_s.shape == (shape[0],)
    for i in range(shape[0]):
        xn, yn = x[i].numpy(), y[i].numpy()
        assert got_p[i].item() == pytest.approx(_ref_psnr(xn, yn), rel=1e-9)
        assert got_s[i].item() == pytest.approx(_ref_ssim(xn, yn), abs=1e-9)


def test_properties(device):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 16, 16, generator=g).to(device)
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x).cpu(), torch.ones(2, dtype=torch.float64))
    noisy = (x + 0.2).clamp(0, 1)
    assert (ssim(x, noisy) < 1).all() and (psnr(x, noisy) < 100).all()
    # more noise, lower scores
    noisier = (x + 0.4).clamp(0, 1)
    assert (psnr(x, noisier) < psnr(x, noisy)).all()
    assert (ssim(x, noisier) < ssim(x, noisy)).all()


def test_errors():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="expected the shape of x"):
        psnr(x, torch.rand(1, 1, 16, 15))
    with pytest.raises(TypeError, match="floating-point"):
        ssim(x, torch.zeros(1, 1, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, x, data_range=0)
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, win_size=4)
    with pytest.raises(ValueError, match="smaller win_size"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="sigma"):
        ssim(x, x, sigma=0.0)
    with pytest.raises(TypeError, match="win_size"):
        ssim(x, x, win_size=2.5)
