"""FGSM, PGD (L-inf, L2; segmentation and classifiers), DAG, SegPGD and the registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshield.attacks import DAG, FGSM, PGD, SegPGD, get_attack, list_attacks, parse_spec
from segshield.attacks.segpgd import segpgd_weights


def linear_seg(k: int = 2, c: int = 3, seed: int = 0) -> nn.Module:
    """1x1 convolution: logits are a known linear function of each pixel."""
    g = torch.Generator().manual_seed(seed)
    m = nn.Conv2d(c, k, 1).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64) * 4)
        m.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64))
    return m.eval()


class LinearClassifier(nn.Module):
    def __init__(self, c=3, h=6, w=6, k=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(c * h * w, k).double()
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g).double())
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def _images(b=4, c=3, h=6, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64)


def _pred(model, x):
    with torch.no_grad():
        z = model(x)
    return (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(1)


# ---------------------------------------------------------------- FGSM


def test_fgsm_linf_equals_sign_of_cross_entropy_gradient_reference():
    model = linear_seg(k=2)
    x = _images()
    y = _pred(model, x)
    y[:, 0, 0] = 255  # ignored pixel: no gradient, no change
    eps = 0.05
    adv = FGSM(eps=eps)(model, x, y).adversarial
    # reference: d CE / d x at a pixel = sum_k (softmax_k - 1[y=k]) W_k
    w = model.weight[:, :, 0, 0]  # (K, C)
    with torch.no_grad():
        p = F.softmax(model(x), 1)
    onehot = F.one_hot(y.clamp(max=1), 2).permute(0, 3, 1, 2).double()
    g = torch.einsum("bkhw,kc->bchw", p - onehot, w)
    g[:, :, 0, 0] = 0
    expect = (x + eps * g.sign()).clamp(0, 1)
    torch.testing.assert_close(adv, expect)


def test_fgsm_targeted_moves_towards_target_and_l2_norm():
    model = linear_seg(k=1, seed=1)
    x = _images(seed=1)
    target = 1 - _pred(model, x)
    res = FGSM(eps=0.5, norm="l2")(model, x, target_masks=target)
    d = (res.adversarial - x).flatten(1).norm(dim=1)
    assert (d <= 0.5 + 1e-9).all() and (d > 0.1).all()
    with torch.no_grad():
        before = F.binary_cross_entropy_with_logits(model(x)[:, 0], target.double())
        after = F.binary_cross_entropy_with_logits(model(res.adversarial)[:, 0], target.double())
    assert after < before


def test_fgsm_on_classifier_matches_reference_and_flips_labels():
    model = LinearClassifier()
    x = _images(b=5)
    y = _pred(model, x)
    eps = 0.2
    res = FGSM(eps=eps)(model, x, y)
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y, reduction="sum").backward()
    torch.testing.assert_close(res.adversarial, (x + eps * xr.grad.sign()).clamp(0, 1))
    assert res.stats["gt_iou"].tolist() == (_pred(model, res.adversarial) == y).double().tolist()


# ---------------------------------------------------------------- PGD


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_untargeted_stays_in_budget_and_drops_gt_iou(norm):
    model = linear_seg(k=2)
    x = _images()
    y = _pred(model, x)
    eps = 0.3 if norm == "linf" else 3.0
    res = PGD(eps=eps, steps=20, norm=norm)(model, x, y)
    d = res.adversarial - x
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    if norm == "linf":
        assert d.abs().max() <= eps + 1e-9
    else:
        assert (d.flatten(1).norm(dim=1) <= eps + 1e-9).all()
    assert (res.stats["gt_iou"] < 0.5).all()
    assert res.stats["success"].all()
    assert torch.isnan(res.stats["target_iou"]).all()
    assert res.stats["steps"].tolist() == [20] * 4


def test_pgd_targeted_reaches_target():
    model = linear_seg(k=2, seed=3)
    x = _images(seed=3)
    target = torch.zeros(4, 6, 6, dtype=torch.long)
    target[:, 1:5, 1:5] = 1
    res = PGD(eps=1.0, alpha=0.05, steps=60)(model, x, target_masks=target)
    assert (res.stats["target_iou"] > 0.9).all()
    assert res.stats["success"].all()


def test_pgd_repeats_under_seed_and_seeds_differ():
    model = linear_seg(k=2)
    x = _images()
    a = PGD(eps=0.1, alpha=0.01, steps=3, seed=7)(model, x).adversarial
    b = PGD(eps=0.1, alpha=0.01, steps=3, seed=7)(model, x).adversarial
    c = PGD(eps=0.1, alpha=0.01, steps=3, seed=8)(model, x).adversarial
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("cls", [PGD, SegPGD])
def test_batched_equals_per_sample(cls):
    model = linear_seg(k=3)
    x = _images()
    y = _pred(model, x)
    att = cls(eps=0.1, steps=4, random_start=False)
    batch = att(model, x, y).adversarial
    for i in range(4):
        one = att(model, x[i : i + 1], y[i : i + 1]).adversarial
        torch.testing.assert_close(batch[i : i + 1], one)


def test_pgd_on_classifier_targeted_and_untargeted():
    model = LinearClassifier(k=3)
    x = _images(b=6)
    y = _pred(model, x)
    un = PGD(eps=0.3, steps=20)(model, x, y)
    assert (_pred(model, un.adversarial) != y).all()
    assert (un.stats["gt_iou"] == 0).all() and un.stats["success"].all()
    target = (y + 1) % 3
    tg = PGD(eps=0.5, steps=30)(model, x, y, target_masks=target)
    assert torch.equal(_pred(model, tg.adversarial), target)
    assert (tg.stats["target_iou"] == 1).all()
    with pytest.raises(ValueError, match="labels"):
        PGD()(model, x, y.view(6, 1, 1).expand(6, 6, 6).contiguous())


def test_pgd_settings_are_checked():
    with pytest.raises(ValueError, match="eps"):
        PGD(eps=0)
    with pytest.raises(ValueError, match="norm"):
        PGD(norm="l1")
    with pytest.raises(TypeError, match="random_start"):
        PGD(random_start=1)
    with pytest.raises(ValueError, match="alpha"):
        PGD(alpha=-1)
    with pytest.raises(ValueError, match="seed"):
        PGD(seed=-1)
    with pytest.raises(ValueError, match="eps"):
        FGSM(eps=-0.1)


def test_pgd_on_device(device):
    model = linear_seg(k=2).to(device)
    x = _images().to(device)
    cpu = PGD(eps=0.1, steps=3)(model.cpu(), x.cpu()).adversarial
    dev = PGD(eps=0.1, steps=3)(model.to(device), x).adversarial
    torch.testing.assert_close(dev.cpu(), cpu)


# ---------------------------------------------------------------- SegPGD


def test_segpgd_weights_follow_lambda_schedule():
    steps = 5
    z = torch.tensor([[[[2.0, -1.0, 3.0]], [[0.0, 0.0, 0.0]]]])  # pred: 0, 1, 0
    y = torch.tensor([[[0, 0, 1]]])
    for t in range(1, steps + 1):
        lam = (t - 1) / (2 * steps)
        expect = torch.tensor([[[1 - lam, lam, lam]]])
        torch.testing.assert_close(segpgd_weights(t, steps, z, y), expect)


def test_segpgd_attacks_and_is_untargeted():
    model = linear_seg(k=2, seed=2)
    x = _images(seed=2)
    y = _pred(model, x)
    res = SegPGD(eps=0.3, steps=10)(model, x, y)
    assert (res.stats["gt_iou"] < 0.5).all()
    assert (res.adversarial - x).abs().max() <= 0.3 + 1e-9
    with pytest.raises(ValueError, match="untargeted"):
        SegPGD()(model, x, y, target_masks=y)
    with pytest.raises(ValueError, match="classifier"):
        SegPGD()(LinearClassifier(), x, y[:, 0, 0])


# ---------------------------------------------------------------- DAG


def test_dag_flips_every_correct_pixel_and_leaves_wrong_ones():
    model = linear_seg(k=2, seed=4)
    x = _images(seed=4)
    pred = _pred(model, x)
    y = pred.clone()
    y[:, 0, :] = 1 - y[:, 0, :]  # first row already wrong: DAG never touches it
    res = DAG(gamma=0.01, steps=500)(model, x, y)
    adv_pred = _pred(model, res.adversarial)
    assert (adv_pred[:, 1:] != y[:, 1:]).all()
    # 1x1 conv: a pixel only moves while it is active, so the wrong row is unchanged
    torch.testing.assert_close(res.adversarial[:, :, 0], x[:, :, 0])
    assert (res.stats["steps"] < 500).all()
    assert res.stats["success"].all()


def test_dag_targeted_reaches_target_and_batch_equals_single():
    model = linear_seg(k=3, seed=5)
    x = _images(seed=5)
    y = _pred(model, x)
    target = (y + 1) % 3
    att = DAG(gamma=0.01, steps=400)
    res = att(model, x, y, target)
    assert (res.stats["target_iou"] > 0.9).all()
    for i in range(4):
        one = att(model, x[i : i + 1], y[i : i + 1], target[i : i + 1])
        torch.testing.assert_close(res.adversarial[i : i + 1], one.adversarial)
        assert one.stats["steps"][0] == res.stats["steps"][i]


def test_dag_settings_checked():
    with pytest.raises(ValueError, match="gamma"):
        DAG(gamma=0)
    with pytest.raises(ValueError, match="steps"):
        DAG(steps=0)


# ---------------------------------------------------------------- registry


def test_registry_builds_and_lists_choices():
    a = get_attack("asma:steps=100,tau=1e-7,stop_at_iou=none")
    assert (a.steps, a.tau, a.stop_at_iou) == (100, 1e-7, None)
    p = get_attack("PGD:eps=8/255,norm=l2,random_start=false")
    assert p.eps == pytest.approx(8 / 255) and p.norm == "l2" and p.random_start is False
    assert set(list_attacks()) >= {"asma", "fgsm", "pgd", "dag", "segpgd", "cw"}
    # the spec of an attack rebuilds it
    assert get_attack(p.spec()).config() == p.config()
    with pytest.raises(ValueError, match="valid attacks: .*asma.*pgd"):
        get_attack("nope")
    with pytest.raises(ValueError, match="valid parameters: tau, beta, steps, stop_at_iou, iou"):
        get_attack("asma:gamma=1")
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("asma:steps")
    with pytest.raises(ValueError, match="norm"):
        get_attack("pgd:norm=l3")


def test_images_outside_unit_range_and_train_mode(caplog):
    model = linear_seg(k=2)
    x = _images()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PGD(steps=1)(model, x * 2)
    with pytest.raises(TypeError, match="floating-point"):
        PGD(steps=1)(model, (x * 255).long())
    model.train()
    PGD(steps=1)(model, x)
    assert "training mode" in caplog.text


def test_pure_functions_check_inputs():
    from segshield.attacks import asma, dag, pgd

    model = linear_seg(k=2)
    x = _images()
    y = _pred(model, x)
    with pytest.raises(ValueError, match="target"):
        asma(model, x, y[:2], steps=1)
    with pytest.raises(ValueError, match="check_every"):
        asma(model, x, y, steps=1, check_every=0)
    with pytest.raises(ValueError, match="adv_labels"):
        dag(model, x, y, y[:, :3], steps=1)
    with pytest.raises(ValueError, match="images"):
        pgd(model, x[0], y, steps=1)


def test_attack_refuses_model_without_gradients():
    from segshield.attacks import FGSM, Defended
    from segshield.defenses import Identity

    class NoGrad(torch.nn.Module):
        supports_gradients = False

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)

        def forward(self, x):
            return self.conv(x)

    x = torch.rand(1, 3, 8, 8)
    for model in (NoGrad(), Defended(NoGrad(), Identity())):
        with pytest.raises(ValueError, match="needs gradients"):
            FGSM(eps=0.01)(model, x)
