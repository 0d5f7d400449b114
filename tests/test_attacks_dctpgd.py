"""DCT-PGD (docs/ALGORITHMS.md §4): budget, repeatability, batching, tables, survival of FR."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segshield.attacks import DCTPGD, PGD, Defended, get_attack
from segshield.attacks.dctpgd import (
    JPEG_LUMA_TABLE,
    defense_table,
    reachable,
    reachable_change,
)
from segshield.defenses import FrequencyRefinement, get_defense
from segshield.defenses.dct import block_dct, dct_matrix

FR_SPEC = "fr:pd=30,ac=5,gd=60"


class DctLinear(nn.Module):
    """Two-class model whose class-1 logit at a pixel is a weighted sum of chosen block-DCT
    coefficients (0..255 scale) of the pixel's 8x8 block in channel 0."""

    def __init__(self, coeffs, weights):
        super().__init__()
        self.coeffs, self.weights = coeffs, weights

    def forward(self, x):
        c = block_dct(x * 255.0)
        z = sum(
            w * c[:, 0, :, :, u, v] for (u, v), w in zip(self.coeffs, self.weights, strict=True)
        )
        z = z.repeat_interleave(8, 1).repeat_interleave(8, 2).unsqueeze(1) / 100
        return torch.cat([torch.zeros_like(z), z], 1)


def dct_model():
    return DctLinear([(0, 1), (1, 0), (2, 3), (5, 5), (6, 7)], [1.0, -1.0, 0.5, 1.0, 1.0]).eval()


def smooth_images(b=2, c=1, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 0.02 * torch.rand(b, c, size, size, generator=g, dtype=torch.float64)


def conv_model(c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = nn.Conv2d(c, 2, 3, padding=1).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64) * 4)
        m.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64))
    return m.eval()


def energy_kept(defense, x, adv):
    d = adv - x
    return float((defense(adv) - defense(x)).pow(2).sum() / d.pow(2).sum())


def test_dctpgd_survives_fr_where_pgd_loses_most():
    fr = get_defense(FR_SPEC)
    model, x = Defended(dct_model(), fr), smooth_images()
    y = torch.ones(2, 16, 16, dtype=torch.long)
    eps = 4 / 255
    dct = DCTPGD(eps=eps, steps=10)(model, x, y).adversarial
    pgd = PGD(eps=eps, steps=10)(model, x, y).adversarial
    assert (dct - x).abs().max() > eps / 2  # it did perturb
    assert energy_kept(fr, x, dct) >= 0.5
    assert energy_kept(fr, x, pgd) < 0.5


@pytest.mark.parametrize("norm, eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_budget_and_range(norm, eps):
    x = torch.rand(3, 1, 16, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[0] = 0.0  # clamping at the range ends is exercised
    x[1] = 1.0
    model = Defended(conv_model(), get_defense(FR_SPEC))
    adv = DCTPGD(eps=eps, steps=4, norm=norm)(model, x).adversarial
    assert adv.min() >= 0 and adv.max() <= 1
    d = (adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert bool((size <= eps + 1e-9).all())
    assert bool((size[2] > 0).all())


def test_repeats_and_batched_equals_per_sample():
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model = Defended(conv_model(), get_defense("fd"))
    attack = DCTPGD(eps=6 / 255, steps=3)
    a = attack(model, x).adversarial
    torch.testing.assert_close(attack(model, x).adversarial, a, rtol=0, atol=0)
    per = torch.cat([attack(model, x[i : i + 1]).adversarial for i in range(3)])
    torch.testing.assert_close(per, a)


def test_tables_come_from_the_defence():
    assert torch.equal(defense_table(FR_SPEC), get_defense(FR_SPEC).table)
    assert defense_table("fd")[0, 0].item() == 25.0 and defense_table("fd")[7, 7] == 30.0
    assert torch.equal(defense_table("jpeg:q=50"), JPEG_LUMA_TABLE)
    # IJG scaling at q = 75: s = 50, floor((50 * 16 + 50) / 100) = 8
    assert defense_table("jpeg:q=75")[0, 0].item() == 8.0
    with pytest.raises(TypeError, match="defense: expected a block-DCT defence"):
        defense_table("median")
    # a spec and a Defended model give the same attack
    x = smooth_images(1)
    fr = get_defense(FR_SPEC)
    by_model = DCTPGD(eps=4 / 255, steps=2)(Defended(dct_model(), fr), x).adversarial
    by_spec = DCTPGD(eps=4 / 255, steps=2, defense=FR_SPEC)(Defended(dct_model(), fr), x)
    torch.testing.assert_close(by_spec.adversarial, by_model)


def test_reachable_change_is_the_largest_change_in_the_ball():
    # L-inf: the sign of a basis function moves its coefficient most (brute force check)
    d = dct_matrix(8)
    change = reachable_change("linf")
    for u, v in [(0, 0), (0, 1), (3, 5), (7, 7)]:
        basis = torch.outer(d[u], d[v])
        c = block_dct(basis.sign().view(1, 1, 8, 8) * 255.0)[0, 0, 0, 0]
        assert c[u, v].item() == pytest.approx(change[u, v].item())
    assert change[0, 0].item() == pytest.approx(8 * 255)
    t = torch.full((8, 8), 30.0)
    # DC reaches 8 * 255 * eps: 32 >= 30 at 4/255, 24 < 30 at 3/255
    assert bool(reachable(t, 4 / 255, "linf")[0, 0]) and not reachable(t, 3 / 255, "linf")[0, 0]
    assert int(reachable(t, 30 / 255, "l2").sum()) == 64
    assert int(reachable(t, 29 / 255, "l2").sum()) == 0


def test_errors():
    x = smooth_images(1)
    with pytest.raises(ValueError, match="defense: dctpgd needs the quantisation table"):
        DCTPGD()(dct_model(), x)
    with pytest.raises(ValueError, match=r"eps: no quantisation step .* needs eps >= 0.0147"):
        flat = FrequencyRefinement.from_table(torch.full((8, 8), 30.0))
        DCTPGD(eps=1 / 255, defense=flat)(dct_model(), x)  # DC first: 30 / (8 * 255)
    with pytest.raises(TypeError, match="defense: expected a block-DCT defence"):
        DCTPGD(defense=get_defense("median"))


def test_registry():
    a = get_attack("dctpgd:eps=4/255,steps=3,defense=fd")
    assert (a.steps, a.defense, a.table[0, 0].item()) == (3, "fd", 25.0)
    assert DCTPGD(defense=get_defense("fd")).defense == get_defense("fd").spec()
