"""Adaptive attacks: Defended(model, defense), BPDA through FR, EOT over random defences."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from segshield.attacks import ASMA, PGD, Defended, loss_gradient


def linear_seg(k=2, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = nn.Conv2d(c, k, 1).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64) * 4)
        m.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64))
    return m.eval()


class RandomScale(nn.Module):
    """Toy randomised defence: multiplies the image by a ~ U(0.5, 1.5) per call."""

    gradient = "exact"
    randomized = True

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        a = torch.rand((), dtype=x.dtype) + 0.5
        return x * a


def test_eot_averages_the_loss_gradient_over_draws():
    model = linear_seg(k=1)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)

    def loss_fn(logits, xr):
        return logits.pow(2).flatten(1).sum(1)

    n = 5
    d = RandomScale()
    torch.manual_seed(3)
    grad, _ = loss_gradient(Defended(model, d, eot_samples=n), x, loss_fn)
    assert d.calls == n
    # reference: the same n draws, gradient of each, averaged
    torch.manual_seed(3)
    ref = torch.zeros_like(x)
    for _ in range(n):
        a = torch.rand((), dtype=x.dtype) + 0.5
        xr = x.clone().requires_grad_(True)
        loss_fn(model(xr * a), xr).sum().backward()
        ref += xr.grad / n
    torch.testing.assert_close(grad, ref)
    # a single draw differs from the average (the test is not vacuous)
    torch.manual_seed(3)
    one, _ = loss_gradient(Defended(model, RandomScale(), eot_samples=1), x, loss_fn)
    assert not torch.allclose(one, grad)


def test_attack_through_defended_model_is_adaptive():
    model = linear_seg(k=2)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    d = RandomScale()
    res = PGD(eps=0.05, steps=2)(Defended(model, d, eot_samples=3), x)
    assert res.adaptive is True
    # one clean pass, 2 steps x 3 draws, one pass on the result
    assert d.calls == 1 + 2 * 3 + 1
    assert PGD(eps=0.05, steps=2)(model, x).adaptive is False


def test_defended_checks_its_arguments(caplog):
    model = linear_seg()
    with pytest.raises(TypeError, match="model"):
        Defended(lambda x: x, RandomScale())
    with pytest.raises(TypeError, match="gradient"):
        Defended(model, nn.Identity())

    class Bad(nn.Module):
        gradient = "magic"
        randomized = False

    with pytest.raises(ValueError, match="'exact', 'bpda', 'smooth'"):
        Defended(model, Bad())

    class NoRandom(nn.Module):
        gradient = "exact"

    with pytest.raises(TypeError, match="randomized"):
        Defended(model, NoRandom())
    with pytest.raises(ValueError, match="eot_samples"):
        Defended(model, RandomScale(), eot_samples=0)
    with caplog.at_level(logging.WARNING, logger="segshield.attacks.adaptive"):
        Defended(model, RandomScale(), eot_samples=1)
    assert "eot_samples" in caplog.text


def _defenses():
    return pytest.importorskip("segshield.defenses")


def test_bpda_through_fr_gives_gradients_where_plain_fr_gives_zero():
    defenses = _defenses()
    model = linear_seg(k=2)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)

    def loss_fn(logits, xr):
        return logits[:, 1].flatten(1).sum(1)

    # plain FR (exact rounding, autograd through it): gradient zero everywhere
    table = defenses.band_table(30, 5, 60)
    xr = x.clone().requires_grad_(True)
    model(defenses.frequency_refine(xr, table))[:, 1].sum().backward()
    assert xr.grad is None or torch.count_nonzero(xr.grad) == 0
    # BPDA: straight-through, the gradient is the model's gradient at FR(x)
    fr = defenses.FrequencyRefinement(pd=30, ac=5, gd=60, gradient="bpda")
    g_bpda, _ = loss_gradient(Defended(model, fr), x, loss_fn)
    assert torch.count_nonzero(g_bpda) == g_bpda.numel()
    # for a linear model the BPDA gradient equals the undefended one
    g_plain, _ = loss_gradient(model, x, loss_fn)
    torch.testing.assert_close(g_bpda, g_plain)
    # the smooth surrogate is differentiable and non-zero too
    fs = defenses.FrequencyRefinement(pd=30, ac=5, gd=60, gradient="smooth")
    g_smooth, _ = loss_gradient(Defended(model, fs), x, loss_fn)
    assert torch.count_nonzero(g_smooth) > 0


def test_asma_through_fr_bpda_runs_and_reports_adaptive():
    defenses = _defenses()
    model = linear_seg(k=2)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    t = torch.zeros(2, 16, 16, dtype=torch.long)
    t[:, 4:12, 4:12] = 1
    fr = defenses.FrequencyRefinement(pd=30, ac=5, gd=60)
    res = ASMA(tau=1e-3, beta=1e-2, steps=3)(Defended(model, fr), x, target_masks=t)
    assert res.adaptive and (res.adversarial - x).abs().max() > 0


def test_defended_follows_the_model_mode():
    from segshield.attacks import Defended
    from segshield.defenses import Identity

    net = torch.nn.Conv2d(3, 1, 1)
    assert Defended(net.eval(), Identity()).training is False
    assert Defended(net.train(), Identity()).training is True
