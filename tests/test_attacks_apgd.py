"""APGD with the SEA losses: losses against hand computations, the step-size schedule,
success, budget, seeds, batching and the registry."""

from __future__ import annotations

import math

import pytest
import torch

from segshield.attacks import APGD, get_attack, list_attacks
from segshield.attacks.apgd import apgd, apgd_checkpoints
from segshield.attacks.losses import (
    balanced_masked_cross_entropy,
    js_divergence,
    masked_cross_entropy,
    pixel_cross_entropy,
)
from test_attacks import _images, _pred, linear_seg

# 2x2 image, K = 3: logits per pixel (row-major); argmax 0, 0 (tie: first), 1, 0
LOGITS = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [-1.0, 3.0, 1.0], [0.0, 0.0, 0.0]]


def _z():
    return torch.tensor(LOGITS, dtype=torch.float64).T.reshape(1, 3, 2, 2)


def _y(labels):
    return torch.tensor(labels).reshape(1, 2, 2)


def _softmax(v):
    e = [math.exp(a) for a in v]
    return [a / sum(e) for a in e]


def _ce(v, y):
    return -math.log(_softmax(v)[y])


def _js(p, y):
    q = [1.0 if k == y else 0.0 for k in range(len(p))]
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    kl = 0.0
    for a, b, c in zip(p, q, m, strict=True):
        kl += (a * math.log(a / c) if a > 0 else 0.0) + (b * math.log(b / c) if b > 0 else 0.0)
    return kl / 2


def _flat(t):
    return t.flatten().tolist()


def test_masked_losses_match_hand_computation():
    labels = [0, 2, 1, 255]  # pixel 1 wrong (pred 0), pixel 3 ignored
    ce = [_ce(v, y) for v, y in zip(LOGITS[:3], labels[:3], strict=True)] + [0.0]
    assert _flat(pixel_cross_entropy(_z(), _y(labels))) == pytest.approx(ce, abs=1e-12)
    mce = _flat(masked_cross_entropy(_z(), _y(labels)))
    assert mce == pytest.approx([ce[0], 0.0, ce[2], 0.0], abs=1e-12)
    mce_t = _flat(masked_cross_entropy(_z(), _y(labels), targeted=True))
    assert mce_t == pytest.approx([0.0, ce[1], 0.0, 0.0], abs=1e-12)


def test_balanced_masked_cross_entropy_matches_hand_computation():
    labels = [0, 0, 1, 255]  # all three valid pixels correct; class 0 twice, class 1 once
    ce = [_ce(v, y) for v, y in zip(LOGITS[:3], labels[:3], strict=True)]
    # N = 3 valid pixels, C = 2 classes present: weights 3 / (2 * 2) and 3 / (2 * 1)
    expect = [0.75 * ce[0], 0.75 * ce[1], 1.5 * ce[2], 0.0]
    got = _flat(balanced_masked_cross_entropy(_z(), _y(labels)))
    assert got == pytest.approx(expect, abs=1e-12)
    labels = [2, 0, 0, 0]  # pixel 0 and 1 differ from their prediction only in pixel 0
    ce = [_ce(v, y) for v, y in zip(LOGITS, labels, strict=True)]
    # N = 4, C = 2: class 2 weight 4 / 2, class 0 weight 4 / 6; pixel 0 and 2 are wrong
    expect_t = [2.0 * ce[0], 0.0, (4 / 6) * ce[2], 0.0]
    got_t = _flat(balanced_masked_cross_entropy(_z(), _y(labels), targeted=True))
    assert got_t == pytest.approx(expect_t, abs=1e-12)


def test_js_divergence_matches_hand_computation_softmax_and_sigmoid():
    labels = [0, 2, 1, 255]
    expect = [_js(_softmax(v), y) for v, y in zip(LOGITS[:3], labels[:3], strict=True)]
    got = _flat(js_divergence(_z(), _y(labels)))
    assert got == pytest.approx(expect + [0.0], abs=1e-12)
    z1 = [1.0, -2.0, 0.0, 3.0]
    y1 = [1, 1, 0, 0]
    sig = [1 / (1 + math.exp(-v)) for v in z1]
    expect1 = [_js([1 - s, s], y) for s, y in zip(sig, y1, strict=True)]
    t1 = torch.tensor(z1, dtype=torch.float64).reshape(1, 1, 2, 2)
    assert _flat(js_divergence(t1, _y(y1))) == pytest.approx(expect1, abs=1e-12)
    bce = [-math.log(s if y == 1 else 1 - s) for s, y in zip(sig, y1, strict=True)]
    assert _flat(pixel_cross_entropy(t1, _y(y1))) == pytest.approx(bce, abs=1e-12)


def test_checkpoints_follow_the_paper_recurrence():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (then 1.05 > 1); w_j = ceil(p_j N)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]
    assert apgd_checkpoints(1) == [1]
    with pytest.raises(ValueError, match="steps"):
        apgd_checkpoints(0)


def test_step_halves_at_every_checkpoint_when_the_loss_is_flat():
    model = torch.nn.Conv2d(3, 2, 1).double()
    with torch.no_grad():
        model.weight.zero_()  # constant logits: no progress, the step halves each time
    x = _images(b=2)
    y = torch.zeros(2, 6, 6, dtype=torch.long)
    for steps in (10, 40):
        _, _, eta = apgd(model, x, y, eps=0.1, steps=steps)
        n = len(apgd_checkpoints(steps))
        torch.testing.assert_close(eta, torch.full((2,), 0.2 / 2**n, dtype=torch.float64))


def test_returned_iterate_carries_the_best_score():
    model = linear_seg(k=3, seed=1)
    x = _images(seed=1)
    y = _pred(model, x)
    adv, score, _ = apgd(model, x, y, eps=0.15, steps=8, loss="mce")
    acc = (_pred(model, adv) == y).double().flatten(1).mean(1)
    torch.testing.assert_close(score, -acc)
    assert (acc < 1).all()  # better than the clean image (accuracy 1)


@pytest.mark.parametrize("loss", ["ce", "mce", "bmce", "js"])
@pytest.mark.parametrize("k", [1, 2])
def test_untargeted_succeeds_within_linf_budget(loss, k):
    model = linear_seg(k=k)
    x = _images()
    y = _pred(model, x)
    res = APGD(eps=0.3, steps=10, loss=loss)(model, x, y)
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    assert (res.adversarial - x).abs().max() <= 0.3 + 1e-9
    assert res.stats["success"].all() and (res.stats["gt_iou"] < 0.5).all()
    assert res.stats["steps"].tolist() == [10] * 4


@pytest.mark.parametrize("loss", ["ce", "mce", "bmce", "js"])
@pytest.mark.parametrize("k", [1, 3])
def test_targeted_reaches_target(loss, k):
    model = linear_seg(k=k, seed=2)  # class 1 is reachable inside [0, 1]^3 at every pixel
    x = _images(seed=3)
    target = torch.zeros(4, 6, 6, dtype=torch.long)
    target[:, 1:5, 1:5] = 1
    res = APGD(eps=1.0, steps=20, loss=loss)(model, x, target_masks=target)
    assert (res.stats["target_iou"] > 0.9).all()


def test_l2_within_budget_and_succeeds():
    model = linear_seg(k=2)
    x = _images()
    y = _pred(model, x)
    res = APGD(eps=3.0, steps=10, norm="l2", loss="bmce")(model, x, y)
    assert ((res.adversarial - x).flatten(1).norm(dim=1) <= 3.0 + 1e-9).all()
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    assert res.stats["success"].all()


def test_repeats_under_seed_and_batched_equals_single():
    model = linear_seg(k=3)
    x = _images()
    a = APGD(eps=0.03, steps=4, seed=1)(model, x).adversarial
    assert torch.equal(a, APGD(eps=0.03, steps=4, seed=1)(model, x).adversarial)
    assert not torch.equal(a, APGD(eps=0.03, steps=4, seed=2)(model, x).adversarial)
    y = _pred(model, x)
    target = (y + 1) % 3
    for loss in ("bmce", "js"):
        att = APGD(eps=0.05, steps=6, loss=loss, random_start=False)
        for tgt in (None, target):
            batch = att(model, x, y, tgt).adversarial
            for i in range(4):
                t = None if tgt is None else tgt[i : i + 1]
                one = att(model, x[i : i + 1], y[i : i + 1], t).adversarial
                torch.testing.assert_close(batch[i : i + 1], one)


def test_registry_and_settings():
    assert list_attacks()["apgd"] == ["eps", "steps", "norm", "loss", "random_start", "seed"]
    att = get_attack("apgd:eps=4/255,steps=5,loss=bmce")
    assert isinstance(att, APGD) and att.loss == "bmce" and att.steps == 5
    with pytest.raises(ValueError, match="loss: expected one of 'ce', 'mce', 'bmce', 'js'"):
        APGD(loss="dice")
    with pytest.raises(ValueError, match="norm"):
        APGD(norm="l1")
    with pytest.raises(TypeError, match="random_start"):
        APGD(random_start=1)
