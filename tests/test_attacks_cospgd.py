"""CosPGD: weights against hand computations, one step against the analytic gradient,
success, budget, seeds, batching and the registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segshield.attacks import CosPGD, get_attack, list_attacks
from segshield.attacks.cospgd import cospgd_weights
from segshield.attacks.losses import onehot_cosine
from test_attacks import LinearClassifier, _images, _pred, linear_seg


def _softmax(v):
    e = [math.exp(a) for a in v]
    return [a / sum(e) for a in e]


# 2x2 image, K = 3: logits per pixel (row-major) and labels (one ignored pixel)
LOGITS = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [-1.0, 3.0, 1.0], [0.0, 0.0, 0.0]]
LABELS = [0, 2, 1, 255]


def _z():
    return torch.tensor(LOGITS, dtype=torch.float64).T.reshape(1, 3, 2, 2)


def _y():
    return torch.tensor(LABELS).reshape(1, 2, 2)


def test_cosine_weights_match_hand_computation_softmax():
    expect_cos = []
    for z, y in zip(LOGITS, LABELS, strict=True):
        if y == 255:
            expect_cos.append(0.0)
            continue
        p = _softmax(z)
        expect_cos.append(p[y] / math.sqrt(sum(a * a for a in p)))
    got = onehot_cosine(_z(), _y()).flatten().tolist()
    assert got == pytest.approx(expect_cos, abs=1e-12)
    un = cospgd_weights(1, 5, _z(), _y()).flatten().tolist()
    assert un == pytest.approx(expect_cos, abs=1e-12)
    tg = cospgd_weights(1, 5, _z(), _y(), targeted=True).flatten().tolist()
    assert tg == pytest.approx([1 - c for c in expect_cos[:3]] + [0.0], abs=1e-12)


def test_cosine_weights_sigmoid_model():
    z = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]]], dtype=torch.float64)
    y = torch.tensor([[[1, 1], [0, 0]]])
    expect = []
    for v, lab in zip([1.0, -2.0, 0.0, 3.0], [1, 1, 0, 0], strict=True):
        s = 1 / (1 + math.exp(-v))
        p = [1 - s, s]
        expect.append(p[lab] / math.hypot(*p))
    assert onehot_cosine(z, y).flatten().tolist() == pytest.approx(expect, abs=1e-12)


def test_one_step_follows_the_cosine_weighted_gradient():
    model = linear_seg(k=3, seed=6)
    x = _images(b=2, seed=6)
    y = _pred(model, x)
    y[0, 1, 2] = (y[0, 1, 2] + 1) % 3  # a wrong pixel: weighted less
    y[1, 0, 0] = 255
    alpha = 0.01
    adv = CosPGD(eps=0.1, alpha=alpha, steps=1, random_start=False)(model, x, y).adversarial
    # d/dx of mean_i cos_i CE_i with cos constant: cos_i W^T (p_i - e_{y_i}) / N
    w = model.weight[:, :, 0, 0]
    with torch.no_grad():
        p = F.softmax(model(x), 1)
    valid = y != 255
    onehot = F.one_hot(y.clamp(max=2), 3).permute(0, 3, 1, 2).double()
    cos = (p * onehot).sum(1) / p.norm(dim=1) * valid
    n = valid.flatten(1).sum(1).view(-1, 1, 1, 1)
    g = torch.einsum("bkhw,kc->bchw", (p - onehot) * cos.unsqueeze(1), w) / n
    torch.testing.assert_close(adv, (x + alpha * g.sign()).clamp(0, 1))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_untargeted_succeeds_within_budget(norm):
    model = linear_seg(k=2)
    x = _images()
    y = _pred(model, x)
    eps = 0.3 if norm == "linf" else 3.0
    res = CosPGD(eps=eps, steps=20, norm=norm)(model, x, y)
    d = (res.adversarial - x).flatten(1)
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-9).all()
    assert res.stats["success"].all() and (res.stats["gt_iou"] < 0.5).all()


@pytest.mark.parametrize("k", [1, 3])
def test_targeted_reaches_target(k):
    model = linear_seg(k=k, seed=2)  # class 1 is reachable inside [0, 1]^3 at every pixel
    x = _images(seed=3)
    target = torch.zeros(4, 6, 6, dtype=torch.long)
    target[:, 1:5, 1:5] = 1
    res = CosPGD(eps=1.0, alpha=0.05, steps=60)(model, x, target_masks=target)
    assert (res.stats["target_iou"] > 0.9).all()
    assert (res.adversarial - x).abs().max() <= 1.0 + 1e-9


def test_repeats_under_seed_and_batched_equals_single():
    model = linear_seg(k=3)
    x = _images()
    a = CosPGD(eps=0.1, alpha=0.01, steps=3, seed=4)(model, x).adversarial
    assert torch.equal(a, CosPGD(eps=0.1, alpha=0.01, steps=3, seed=4)(model, x).adversarial)
    assert not torch.equal(a, CosPGD(eps=0.1, alpha=0.01, steps=3, seed=5)(model, x).adversarial)
    y = _pred(model, x)
    target = (y + 1) % 3
    att = CosPGD(eps=0.1, steps=4, random_start=False)
    for tgt in (None, target):
        batch = att(model, x, y, tgt).adversarial
        for i in range(4):
            one = att(model, x[i : i + 1], y[i : i + 1], None if tgt is None else tgt[i : i + 1])
            torch.testing.assert_close(batch[i : i + 1], one.adversarial)


def test_registry_and_refusals():
    assert "cospgd" in list_attacks()
    att = get_attack("cospgd:eps=4/255,steps=3,norm=l2")
    assert isinstance(att, CosPGD) and att.norm == "l2" and att.steps == 3
    with pytest.raises(ValueError, match="classifier"):
        CosPGD()(LinearClassifier(c=1, h=2, w=2, k=2), torch.rand(1, 1, 2, 2, dtype=torch.float64))
