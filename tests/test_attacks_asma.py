"""ASMA: the batched attack equals the published one-image algorithm, sample by sample."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segshield.attacks import ASMA, asma
from segshield.attacks.asma import authors_iou, mean_foreground_iou


class TinySeg(nn.Module):
    """A small non-linear segmentation net: conv3x3 - tanh - conv1x1 -> K logits."""

    def __init__(self, c: int = 3, k: int = 2, seed: int = 0, dtype=torch.float64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Conv2d(c, 6, 3, padding=1).to(dtype)
        self.b = nn.Conv2d(6, k, 1).to(dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def reference_asma_one_image(model, image, target, classes, tau, beta, iters):
    """The published one-image ASMA loop, written out plainly (docs/ALGORITHMS.md §4).

    ``image`` (1, C, H, W), ``target`` (H, W). K >= 2: loss over ``classes`` with argmax
    prediction; K = 1: the binary single-channel form with sigmoid > 0.5.
    Returns the list of images after each iteration and the list of IoUs measured.
    """
    x0 = image.clone()
    x = image.clone()
    mult = tau  # beta * 0 + tau
    history, ious = [], []
    for _ in range(iters):
        x = x.detach().requires_grad_(True)
        out = model(x)
        if out.shape[1] == 1:
            z = out[0, 0]
            pred = (torch.sigmoid(z) > 0.5).long()
            tgt1 = (target == 1).to(z.dtype)
            tgt0 = (target == 0).to(z.dtype)
            loss = (z * tgt1 * (pred == 0)).sum() - (z * tgt0 * (pred == 1)).sum()
        else:
            pred = out.argmax(1)[0]
            loss = 0
            for c in classes:
                opt_mask = (target == c).to(out.dtype)
                pred_mask = (pred != c).to(out.dtype)
                loss = loss + (out[0, c] * opt_mask * pred_mask).sum()
        l2 = ((x0 - x) ** 2).sum()
        (loss - l2).backward()
        perturbed = x.detach() + x.grad * mult
        with torch.no_grad():
            pout = model(perturbed)
            if pout.shape[1] == 1:
                p = (torch.sigmoid(pout[0, 0]) > 0.5).long()
            else:
                p = pout.argmax(1)[0]
        # the authors' mask similarity, verbatim: sum(p * t) / sum(clip(p + t, max=1))
        pn, tn = p.numpy().astype(float), target.numpy().astype(float)
        union = pn + tn
        union[union > 1] = 1
        iou = float((pn * tn).sum() / union.sum())
        mult = beta * iou + tau
        x = perturbed.clamp(0, 1)
        history.append(x.clone())
        ious.append(iou)
    return history, ious


def _data(b=3, c=3, h=10, w=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    t = torch.zeros(b, h, w, dtype=torch.long)
    for i in range(b):  # different blobs as targets
        t[i, 2 + i : 7 + i, 3 : 8 + i] = 1
    return x, t


@pytest.mark.parametrize("k", [1, 2, 3])
def test_batched_trajectory_equals_one_image_reference(k):
    torch.manual_seed(0)
    model = TinySeg(k=k).eval()
    x, t = _data()
    tau, beta, n = 2e-3, 2e-2, 12  # large enough that predictions flip along the way
    for steps in (1, 5, n):
        adv, used = asma(model, x, t, tau=tau, beta=beta, steps=steps)
        assert used.tolist() == [steps] * 3
        for i in range(x.shape[0]):
            ref = reference_asma_one_image(model, x[i : i + 1], t[i], range(k), tau, beta, steps)[0]
            torch.testing.assert_close(adv[i : i + 1], ref[-1], rtol=1e-9, atol=1e-12)
    # the attack moved the image and changed predictions (the comparison is not vacuous)
    assert (adv - x).abs().max() > 1e-3
    with torch.no_grad():
        p0 = (model(x).argmax(1) if k > 1 else (model(x)[:, 0] > 0)).long()
        p1 = (model(adv).argmax(1) if k > 1 else (model(adv)[:, 0] > 0)).long()
    assert (p0 != p1).any()
    assert authors_iou(p1, t).sum() > authors_iou(p0, t).sum()


def test_multiclass_target_follows_the_authors_formula():
    model = TinySeg(k=3, seed=2).eval()
    x, t = _data(b=2)
    t[:, 4:6, 4:7] = 2
    adv, _ = asma(model, x, t, tau=2e-3, beta=2e-2, steps=8)
    for i in range(2):
        ref = reference_asma_one_image(model, x[i : i + 1], t[i], range(3), 2e-3, 2e-2, 8)[0]
        torch.testing.assert_close(adv[i : i + 1], ref[-1], rtol=1e-9, atol=1e-12)


def test_mean_foreground_iou_against_per_class_reference():
    g = torch.Generator().manual_seed(0)
    p = torch.randint(0, 3, (4, 5, 5), generator=g)
    t = torch.randint(0, 3, (4, 5, 5), generator=g)
    t[0] = 0
    p[0] = 0
    got = mean_foreground_iou(p, t, 3)
    for b in range(4):
        vals = []
        for c in (1, 2):
            inter = ((p[b] == c) & (t[b] == c)).sum().item()
            union = ((p[b] == c) | (t[b] == c)).sum().item()
            if union:
                vals.append(inter / union)
        assert got[b].item() == pytest.approx(sum(vals) / len(vals) if vals else 1.0)
    # binary masks: the authors' similarity and the mean IoU agree
    pb, tb = (p > 0).long(), (t > 1).long()
    torch.testing.assert_close(mean_foreground_iou(pb, tb, 2), authors_iou(pb, tb))


def test_iou_mean_option_changes_multiclass_trajectory_only():
    x, t = _data(b=2)
    model = TinySeg(k=2, seed=2).eval()
    mean = asma(model, x, t, tau=2e-3, beta=2e-2, steps=5, iou="mean")[0]
    torch.testing.assert_close(mean, asma(model, x, t, tau=2e-3, beta=2e-2, steps=5)[0])
    model = TinySeg(k=3, seed=2).eval()
    t[:, 4:6, 4:7] = 2
    mean = asma(model, x, t, tau=2e-3, beta=2e-2, steps=5, iou="mean")[0]
    assert not torch.allclose(mean, asma(model, x, t, tau=2e-3, beta=2e-2, steps=5)[0])
    with pytest.raises(ValueError, match="'authors', 'mean'"):
        ASMA(iou="dice")


def test_contract_asma_class_equals_reference_float32_default_settings():
    model = TinySeg(k=2, dtype=torch.float32).eval()
    x, t = _data(b=2)
    x = x.float()
    res = ASMA(steps=4)(model, x, masks=None, target_masks=t)
    for i in range(2):
        ref = reference_asma_one_image(model, x[i : i + 1], t[i], [0, 1], 1e-7, 1e-6, 4)[0]
        torch.testing.assert_close(res.adversarial[i : i + 1], ref[-1], rtol=1e-5, atol=1e-7)
    assert res.stats["steps"].tolist() == [4, 4]
    assert res.attack == "asma" and res.adaptive is False


def test_ignore_pixels_in_target_do_not_contribute():
    model = TinySeg(k=2).eval()
    x, t = _data(b=1)
    t_ign = t.clone()
    t_ign[:, :, :2] = 255
    adv, _ = asma(model, x, t_ign, tau=1e-2, beta=0.0, steps=1)
    # the first step equals tau * gradient of the loss on non-ignored pixels only
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    pred = out.argmax(1)
    valid = t_ign != 255
    tt = torch.where(valid, t_ign, 0)
    picked = out.gather(1, tt.unsqueeze(1))[:, 0]
    (picked * (valid & (pred != tt))).sum().backward()
    expect = (x + 1e-2 * xr.grad).clamp(0, 1)
    torch.testing.assert_close(adv, expect)


def test_stop_at_iou_freezes_each_sample_on_its_own():
    model = TinySeg(k=2).eval()
    x, t = _data(b=3)
    full, _ = asma(model, x, t, tau=2e-3, beta=2e-2, steps=30)
    adv, used = asma(model, x, t, tau=2e-3, beta=2e-2, steps=30, stop_at_iou=0.3, check_every=4)
    # each sample stops when its own IoU (on the perturbed image) first reaches 0.3
    for i in range(3):
        hist, ious = reference_asma_one_image(model, x[i : i + 1], t[i], [0, 1], 2e-3, 2e-2, 30)
        n = int(used[i])
        first = next((j + 1 for j, v in enumerate(ious) if v >= 0.3), 30)
        assert n == first
        torch.testing.assert_close(adv[i : i + 1], hist[n - 1], rtol=1e-9, atol=1e-12)
    assert used.unique().numel() > 1, "samples should stop at different steps"
    assert not torch.equal(adv, full)


def test_batched_equals_per_sample_calls():
    model = TinySeg(k=2).eval()
    x, t = _data(b=3)
    att = ASMA(tau=2e-3, beta=2e-2, steps=6)
    batch = att(model, x, target_masks=t).adversarial
    for i in range(3):
        one = att(model, x[i : i + 1], target_masks=t[i : i + 1]).adversarial
        torch.testing.assert_close(batch[i : i + 1], one, rtol=1e-10, atol=1e-12)


def test_targeted_success_on_linear_model():
    # 1x1 conv on one channel: logit = 40 * (x - 0.5); the target is reachable
    model = nn.Conv2d(1, 1, 1).double()
    with torch.no_grad():
        model.weight.fill_(40.0)
        model.bias.fill_(-20.0)
    x = torch.full((2, 1, 6, 6), 0.3, dtype=torch.float64)
    t = torch.zeros(2, 6, 6, dtype=torch.long)
    t[0, 1:4, 1:4] = 1
    t[1, 2:6, 0:3] = 1
    res = ASMA(tau=1e-3, beta=1e-2, steps=50)(model, x, target_masks=t)
    assert (res.stats["target_iou"] == 1).all()
    assert res.stats["success"].all()
    assert ((res.adversarial >= 0) & (res.adversarial <= 1)).all()
    # only target pixels moved
    moved = (res.adversarial - x).abs()[:, 0] > 0
    assert torch.equal(moved, t.bool())
    torch.testing.assert_close(res.stats["linf"], (res.adversarial - x).flatten(1).abs().amax(1))


def test_asma_settings_and_inputs_are_checked():
    with pytest.raises(ValueError, match="tau"):
        ASMA(tau=0)
    with pytest.raises(ValueError, match="steps"):
        ASMA(steps=0)
    with pytest.raises(TypeError, match="steps"):
        ASMA(steps=1.5)
    with pytest.raises(ValueError, match="stop_at_iou"):
        ASMA(stop_at_iou=1.5)
    model = TinySeg(k=2).eval()
    x, t = _data(b=2)
    with pytest.raises(ValueError, match="target_masks"):
        ASMA(steps=1)(model, x)
    with pytest.raises(ValueError, match="target_masks"):
        ASMA(steps=1)(model, x, target_masks=t[:1])
    with pytest.raises(ValueError, match="images"):
        ASMA(steps=1)(model, x[0], target_masks=t)
    with pytest.raises(ValueError, match="classifier"):
        ASMA(steps=1)(nn.Sequential(nn.Flatten(), nn.Linear(360, 2).double()), x, target_masks=t)


def test_asma_on_cuda_matches_cpu(device):
    model = TinySeg(k=2).eval()
    x, t = _data(b=2)
    cpu, _ = asma(model, x, t, tau=2e-3, beta=2e-2, steps=3)
    dev, _ = asma(model.to(device), x.to(device), t.to(device), tau=2e-3, beta=2e-2, steps=3)
    torch.testing.assert_close(dev.cpu(), cpu, rtol=1e-7, atol=1e-9)
