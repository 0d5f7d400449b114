"""EOT over the 8x8 block-grid offsets: Defended(..., eot="grid-shift") (docs/ALGORITHMS.md §4)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from segshield.attacks import DCTPGD, Defended, loss_gradient
from segshield.attacks.adaptive import grid_shift
from segshield.defenses import get_defense

FR_SPEC = "fr:pd=30,ac=5,gd=60"


def conv_model(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = nn.Conv2d(1, 2, 3, padding=1).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64) * 4)
        m.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64))
    return m.eval()


def images(b=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, size, size, generator=g, dtype=torch.float64)


def loss_fn(logits, xr):
    return logits[:, 1].pow(2).flatten(1).sum(1)


def test_grid_shift_moves_the_block_grid():
    fr, x = get_defense(FR_SPEC), images(1, 24)
    dy, dx = 3, 5
    y = grid_shift(fr, x, dy, dx)
    assert y.shape == x.shape
    # the shifted grid has a whole block at rows 8 - dy.., columns 8 - dx..: it is FR of
    # that block alone (independent of the padding)
    r, c = 8 - dy, 8 - dx
    torch.testing.assert_close(y[..., r : r + 8, c : c + 8], fr(x[..., r : r + 8, c : c + 8]))
    assert not torch.allclose(y, fr(x))


def test_offset_zero_only_equals_plain_defended():
    fr, x = get_defense(FR_SPEC), images()
    plain = Defended(conv_model(), fr)
    shifted = Defended(conv_model(), fr, eot_samples=3, eot="grid-shift", offsets=1)
    torch.testing.assert_close(shifted(x), plain(x), rtol=0, atol=0)
    torch.testing.assert_close(
        loss_gradient(shifted, x, loss_fn)[0], loss_gradient(plain, x, loss_fn)[0]
    )


def test_gradient_is_the_mean_over_drawn_shifts():
    fr, x, n = get_defense(FR_SPEC), images(), 6
    model = Defended(conv_model(), fr, eot_samples=n, eot="grid-shift", seed=4)
    grad, _ = loss_gradient(model, x, loss_fn)
    gen = torch.Generator().manual_seed(4)  # the same draws, one gradient each
    ref = torch.zeros_like(x)
    for _ in range(n):
        dy, dx = torch.randint(0, 8, (2,), generator=gen).tolist()
        xr = x.clone().requires_grad_(True)
        loss_fn(model.model(grid_shift(fr, xr, dy, dx)), xr).sum().backward()
        ref += xr.grad / n
    torch.testing.assert_close(grad, ref)
    single = loss_gradient(Defended(conv_model(), fr), x, loss_fn)[0]
    assert not torch.allclose(grad, single, rtol=1e-3, atol=1e-6)


def test_seeded_repeatability():
    fr, x = get_defense(FR_SPEC), images()

    def grad(seed):
        model = Defended(conv_model(), fr, eot_samples=4, eot="grid-shift", seed=seed)
        return loss_gradient(model, x, loss_fn)[0]

    torch.testing.assert_close(grad(1), grad(1), rtol=0, atol=0)
    assert not torch.allclose(grad(1), grad(2))
    model = Defended(conv_model(), fr, eot_samples=4, eot="grid-shift", seed=1)
    first = loss_gradient(model, x, loss_fn)[0]
    model.reseed(1)
    torch.testing.assert_close(loss_gradient(model, x, loss_fn)[0], first, rtol=0, atol=0)
    # an attack reseeds with its own seed: the same call repeats on the same model (masks
    # given: the clean prediction would come from a shifted grid drawn before the reseed)
    y = torch.ones(2, 16, 16, dtype=torch.long)
    attack = DCTPGD(eps=8 / 255, steps=2, seed=3)
    a = attack(model, x, y).adversarial
    torch.testing.assert_close(attack(model, x, y).adversarial, a, rtol=0, atol=0)
    other = DCTPGD(eps=8 / 255, steps=2, seed=5)(model, x, y).adversarial
    assert not torch.equal(other, a)


def test_settings_are_checked(caplog):
    fr = get_defense(FR_SPEC)
    with pytest.raises(ValueError, match="eot"):
        Defended(conv_model(), fr, eot="rotate")
    with pytest.raises(ValueError, match="offsets"):
        Defended(conv_model(), fr, eot="grid-shift", offsets=9)
    with caplog.at_level(logging.WARNING):
        Defended(conv_model(), fr, eot="grid-shift")
    assert "eot_samples=1" in caplog.text
