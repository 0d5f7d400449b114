"""Carlini-Wagner L2 on tiny linear classifiers with a closed-form minimal perturbation."""

from __future__ import annotations

import pytest
import torch

from segshield.attacks.cw import CarliniWagnerL2, cw_l2, cw_margin
from segshield.attacks.fgsm import FGSM


def _linear(seed: int = 0, k: int = 2, d: int = 16) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, k))
    return model.eval()


def _minimal_l2(model: torch.nn.Module, x: torch.Tensor, label: int, other: int) -> float:
    """Reference: distance from x to the hyperplane where logit ``other`` reaches ``label``."""
    lin = model[1]
    u = (lin.weight[other] - lin.weight[label]).detach().double()
    gap = (lin(x.flatten(1))[0, label] - lin(x.flatten(1))[0, other]).detach().double()
    return float(gap / u.norm())


def _images(b: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return 0.4 + 0.2 * torch.rand(b, 1, 4, 4, generator=gen)


def test_cw_margin_reference():
    z = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, -1.0]])
    y = torch.tensor([0, 0])
    assert cw_margin(z, y, targeted=False).tolist() == [0.5, 0.0]
    assert cw_margin(z, y, targeted=False, confidence=1.0).tolist() == [1.5, 0.0]
    t = torch.tensor([2, 2])
    assert cw_margin(z, t, targeted=True).tolist() == [0.5, 5.0]
    # a sigmoid classifier (K = 1) is [0, z]
    assert cw_margin(torch.tensor([[2.0]]), torch.tensor([1]), targeted=False).tolist() == [2.0]


def test_cw_finds_near_minimal_perturbation_smaller_than_fgsm():
    model = _linear()
    x = _images()
    with torch.no_grad():
        y = model(x).argmax(1)
    r = CarliniWagnerL2(c_init=1.0, search_steps=5, steps=80, lr=0.1)(model, x, y)
    assert bool(r.stats["success"].all())
    with torch.no_grad():
        assert bool((model(r.adversarial).argmax(1) != y).all())
    for i in range(x.shape[0]):
        ref = _minimal_l2(model, x[i : i + 1], int(y[i]), 1 - int(y[i]))
        l2 = float(r.stats["l2"][i])
        assert l2 >= ref * (1 - 1e-3)  # cannot beat the closed-form optimum
        assert l2 <= ref * 1.05  # and gets close to it
    # a fixed-size L2 step that flips every sample (FGSM-L2) is larger
    eps = 1.5 * max(_minimal_l2(model, x[i : i + 1], int(y[i]), 1 - int(y[i])) for i in range(3))
    f = FGSM(eps=eps, norm="l2")(model, x, y)
    assert bool(f.stats["success"].all())
    assert bool((r.stats["l2"] < f.stats["l2"]).all())


def test_cw_stays_in_unit_box_even_near_the_edges():
    model = _linear(3)
    x = torch.zeros(2, 1, 4, 4)
    x[1] = 1.0
    adv, _ = cw_l2(model, x, model(x).argmax(1).detach(), c_init=10.0, steps=50, lr=0.1)
    assert adv.min() >= 0.0 and adv.max() <= 1.0


def test_cw_targeted_three_classes():
    model = _linear(2, k=3)
    x = _images(2)
    with torch.no_grad():
        y = model(x).argmax(1)
    t = (y + 1) % 3
    r = CarliniWagnerL2(c_init=1.0, search_steps=5, steps=80, lr=0.1)(model, x, y, t)
    with torch.no_grad():
        assert model(r.adversarial).argmax(1).tolist() == t.tolist()
    assert r.stats["target_iou"].tolist() == [1.0, 1.0]


def test_cw_confidence_enlarges_the_margin():
    model = _linear(4)
    x = _images(2)
    y = model(x).argmax(1).detach()
    r = CarliniWagnerL2(confidence=0.5, c_init=1.0, search_steps=5, steps=100, lr=0.05)(model, x, y)
    assert bool(r.stats["success"].all())
    with torch.no_grad():
        z = model(r.adversarial)
    own = z.gather(1, y.view(-1, 1)).squeeze(1)
    other = z.gather(1, (1 - y).view(-1, 1)).squeeze(1)
    assert bool((other - own >= 0.5 - 1e-4).all())


def test_cw_deterministic_and_batch_equals_single():
    model = _linear(5)
    x = _images(3)
    y = model(x).argmax(1).detach()
    atk = CarliniWagnerL2(search_steps=3, steps=40)
    a, b = atk(model, x, y), atk(model, x, y)
    assert torch.equal(a.adversarial, b.adversarial)
    single = atk(model, x[1:2], y[1:2])
    torch.testing.assert_close(single.adversarial, a.adversarial[1:2], atol=1e-6, rtol=0)
    assert int(single.stats["steps"][0]) == int(a.stats["steps"][1])


def test_cw_failure_returns_clean_image():
    model = _linear(6)
    x = _images(1)
    y = model(x).argmax(1).detach()
    # tiny c and few steps: the distance term wins and nothing flips
    adv, used = cw_l2(model, x, y, c_init=1e-8, search_steps=1, steps=5, abort_early=False)
    assert torch.equal(adv, x)
    assert used.tolist() == [5]


def test_cw_does_not_touch_model_gradients():
    model = _linear(7)
    x = _images(1)
    CarliniWagnerL2(steps=5, search_steps=1)(model, x)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"confidence": -1.0}, ValueError, "confidence"),
        ({"c_init": 0.0}, ValueError, "c_init"),
        ({"search_steps": 0}, ValueError, "search_steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"lr": -0.1}, ValueError, "lr"),
        ({"abort_early": "yes"}, TypeError, "abort_early"),
    ],
)
def test_cw_rejects_bad_settings(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CarliniWagnerL2(**kwargs)


def test_cw_rejects_segmentation_models_and_bad_labels():
    seg = torch.nn.Conv2d(1, 2, 1).eval()
    with pytest.raises(ValueError, match="cw attacks classifiers"):
        CarliniWagnerL2(steps=1, search_steps=1)(seg, torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="masks: expected integer class labels"):
        CarliniWagnerL2()(_linear(), torch.rand(2, 1, 4, 4), torch.zeros(2, 4, 4).long())


def test_cw_on_device(device):
    model = _linear(8).to(device)
    x = _images(2).to(device)
    y = model(x).argmax(1)
    r = CarliniWagnerL2(c_init=1.0, search_steps=4, steps=100)(model, x, y)
    assert r.adversarial.device.type == device.type
    assert bool(r.stats["success"].all())
