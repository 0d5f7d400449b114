"""Training: Dice + CE loss, augmentation, train/validate loop, determinism, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshield.models import SegmentationModel, build_model, load
from segshield.training import (
    Augment,
    DiceCELoss,
    augment_pair,
    dice_ce_loss,
    evaluate_segmentation,
    state_paths,
    train_segmentation,
)

# ------------------------------------------------------------------ loss


def _ref_loss(logits: torch.Tensor, masks: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Reference: gather the valid pixels, then textbook BCE/CE and soft Dice."""
    valid = masks != 255
    k = logits.shape[1]
    z = logits.permute(0, 2, 3, 1)[valid]  # (N, K)
    t = masks[valid]
    if k == 1:
        p = torch.sigmoid(z[:, 0])
        tf = t.double()
        ce = -(tf * torch.log(p) + (1 - tf) * torch.log(1 - p)).mean()
        dice = 1 - (2 * (p * tf).sum() + eps) / (p.sum() + tf.sum() + eps)
        return dice + ce
    p = torch.softmax(z, dim=1)
    ce = -torch.log(p[torch.arange(len(t)), t]).mean()
    dices = []
    for c in range(1, k):
        pc, tc = p[:, c], (t == c).double()
        dices.append(1 - (2 * (pc * tc).sum() + eps) / (pc.sum() + tc.sum() + eps))
    return torch.stack(dices).mean() + ce


@pytest.mark.parametrize("k", [1, 3])
def test_loss_matches_reference_with_ignore(k):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, k, 6, 5, generator=g, dtype=torch.float64)
    masks = torch.randint(0, max(k, 2), (2, 6, 5), generator=g)
    masks[0, :2] = 255
    got = dice_ce_loss(logits, masks)
    torch.testing.assert_close(got, _ref_loss(logits, masks))
    torch.testing.assert_close(DiceCELoss()(logits, masks), got)


@pytest.mark.parametrize("k", [1, 3])
def test_loss_ignores_ignored_pixels_entirely(k):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, k, 4, 4, generator=g, requires_grad=True)
    masks = torch.randint(0, max(k, 2), (1, 4, 4), generator=g)
    masks[0, 0] = 255
    dice_ce_loss(logits, masks).backward()
    assert torch.all(logits.grad[0, :, 0] == 0)
    assert logits.grad[0, :, 1:].abs().sum() > 0


def test_loss_small_for_perfect_prediction_and_large_for_wrong():
    masks = torch.tensor([[[0, 1], [1, 0]]])
    good = (masks.float() * 40 - 20).unsqueeze(1)
    assert float(dice_ce_loss(good, masks)) < 1e-3
    assert float(dice_ce_loss(-good, masks)) > 10
    good3 = F.one_hot(masks, 3).permute(0, 3, 1, 2).float() * 40
    assert float(dice_ce_loss(good3, masks)) < 1e-3


def test_loss_errors():
    with pytest.raises(ValueError, match="to match the images"):
        dice_ce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class ids"):
        dice_ce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="dice_weight"):
        DiceCELoss(dice_weight=-1)
    with pytest.raises(ValueError, match="eps"):
        dice_ce_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), eps=0)


# ------------------------------------------------------------- augmentation


def _blob_batch(b: int = 4, size: int = 32):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.stack(
        [(((yy - 10 - i) ** 2 + (xx - 14 - 2 * i) ** 2) < 60).long() for i in range(b)]
    )
    return masks.float().unsqueeze(1).expand(b, 3, size, size).contiguous(), masks


def test_augment_deterministic_under_seed_and_varies_across_seeds():
    x, m = _blob_batch()
    a = augment_pair(x, m, torch.Generator().manual_seed(5))
    b = augment_pair(x, m, torch.Generator().manual_seed(5))
    c = augment_pair(x, m, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_flips_move_image_and_mask_together_exactly():
    x, m = _blob_batch(8)
    off = {"rotate": 0, "scale": 0, "translate": 0, "brightness": 0, "contrast": 0}
    xa, ma = augment_pair(x, m, torch.Generator().manual_seed(0), saturation=0, **off)
    assert torch.equal(xa[:, 0], ma.float())
    flipped = [not torch.equal(ma[i], m[i]) for i in range(8)]
    assert any(flipped)  # 8 samples, two flips at p = 0.5: some changed


def test_affine_moves_image_and_mask_together():
    x, m = _blob_batch(8)
    aug = Augment(rotate=30, scale=0.2, translate=0.1, brightness=0, contrast=0, saturation=0)
    xa, ma = aug(x, m, torch.Generator().manual_seed(2))
    agree = ((xa[:, 0] > 0.5).long() == ma).float().mean()
    assert agree > 0.97
    assert not torch.equal(ma, m)


def test_augment_never_blends_class_ids():
    x, m = _blob_batch(4)
    m = m * 2
    m[:, :3] = 255
    _, ma = augment_pair(x, m, torch.Generator().manual_seed(3), rotate=40, scale=0.3)
    assert set(ma.unique().tolist()) <= {0, 2, 255}
    assert ma.dtype == m.dtype


def test_colour_jitter_keeps_range_and_leaves_masks():
    x = torch.rand(4, 3, 16, 16)
    m = torch.randint(0, 2, (4, 16, 16))
    off = {"hflip": False, "vflip": False, "rotate": 0, "scale": 0, "translate": 0}
    xa, ma = augment_pair(x, m, torch.Generator().manual_seed(4), brightness=1, **off)
    assert torch.equal(ma, m)
    assert xa.min() >= 0 and xa.max() <= 1
    assert not torch.allclose(xa, x)


def test_augment_identity_when_all_off():
    x, m = torch.rand(2, 1, 9, 11), torch.randint(0, 3, (2, 9, 11))
    settings = dict.fromkeys(("rotate", "scale", "translate", "brightness", "contrast"), 0)
    xa, ma = augment_pair(
        x, m, torch.Generator(), hflip=False, vflip=False, saturation=0, **settings
    )
    torch.testing.assert_close(xa, x)
    assert torch.equal(ma, m)


def test_augment_errors():
    with pytest.raises(ValueError, match="rotate"):
        Augment(rotate=200)
    with pytest.raises(ValueError, match="scale"):
        Augment(scale=0.9)
    with pytest.raises(ValueError, match="to match the images"):
        augment_pair(torch.rand(1, 3, 4, 4), torch.zeros(1, 5, 4, dtype=torch.long), None)


# --------------------------------------------------------------- the loop


def _easy_dataset(n: int, size: int = 16, seed: int = 0, k: int = 2):
    """Bright discs on dark noisy background; class = disc (and inner disc for k = 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    items = []
    for i in range(n):
        cy, cx = rng.uniform(5, size - 5, 2)
        r = rng.uniform(3, 5)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        mask = (d2 < r**2).astype(np.int64)
        if k == 3:
            mask[d2 < (r / 2) ** 2] = 2
        img = 0.2 + 0.6 * (mask > 0) + 0.2 * (mask == 2) + rng.normal(0, 0.05, (3, size, size))
        items.append(
            {
                "image": torch.from_numpy(np.clip(img, 0, 1).astype(np.float32)),
                "mask": torch.from_numpy(mask),
                "name": f"disc{i}",
            }
        )
    return items


def _train(tmp_path, name="run", epochs=3, seed=0, resume=None, k=2, **kw):
    torch.manual_seed(123)
    model = build_model("small", num_classes=1 if k == 2 else k, in_channels=3, width=4)
    regions = {"fg": (1,)} if k == 2 else {"disc": (1, 2), "cup": (2,)}
    result = train_segmentation(
        model,
        _easy_dataset(16, k=k),
        _easy_dataset(4, seed=1, k=k),
        epochs=epochs,
        out=tmp_path / name,
        regions=regions,
        batch_size=4,
        lr=1e-2,
        seed=seed,
        resume=resume,
        **kw,
    )
    return model, result


def test_training_decreases_loss_and_writes_best_checkpoint(tmp_path):
    model, result = _train(tmp_path, epochs=4)
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0]
    assert result["epochs_run"] == 4
    for p in ("run.safetensors", "run.json", "run.state.safetensors", "run.state.json"):
        assert (tmp_path / p).is_file()
    best = load(tmp_path / "run")
    cfg = best.config
    assert cfg["val_scores"]["fg_dice"] == pytest.approx(result["best_score"])
    assert result["best_score"] == pytest.approx(
        max(h["val"]["mean_dice"] for h in result["history"])
    )
    assert cfg["epoch"] == result["best_epoch"]
    assert cfg["input_size"] == [16, 16]


def test_training_is_deterministic_under_a_seed(tmp_path):
    a, ra = _train(tmp_path, "a", epochs=2, seed=7)
    b, rb = _train(tmp_path, "b", epochs=2, seed=7)
    c, _ = _train(tmp_path, "c", epochs=2, seed=8)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert [h["loss"] for h in ra["history"]] == [h["loss"] for h in rb["history"]]
    assert any(
        not torch.equal(va, vc) for va, vc in zip(a.parameters(), c.parameters(), strict=True)
    )


def test_resume_continues_from_saved_epoch(tmp_path, monkeypatch):
    import segshield.training.segmentation as loop

    straight, _ = _train(tmp_path, "straight", epochs=3)
    real_eval = loop.evaluate_segmentation
    calls = []

    def crash_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is interrupted during epoch 2
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_segmentation", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "split", epochs=3)
    monkeypatch.setattr(loop, "evaluate_segmentation", real_eval)
    state = json.loads(state_paths(tmp_path / "split")[1].read_text())
    assert state["epoch"] == 1
    resumed, rr = _train(tmp_path, "split", epochs=3, resume=tmp_path / "split")
    assert rr["epochs_run"] == 2
    assert [h["epoch"] for h in rr["history"]] == [1, 2, 3]
    for (k, v1), v2 in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(v1, v2), k
    assert json.loads(state_paths(tmp_path / "split")[1].read_text())["epoch"] == 3


def test_resume_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="training state not found"):
        _train(tmp_path, "x", epochs=1, resume=tmp_path / "missing")
    _train(tmp_path, "small_run", epochs=1)
    model = build_model("unet", width=2, depth=1)
    with pytest.raises(ValueError, match="architecture 'small'"):
        train_segmentation(
            model,
            _easy_dataset(4),
            _easy_dataset(2),
            epochs=2,
            out=tmp_path / "u",
            regions={"fg": (1,)},
            resume=tmp_path / "small_run",
        )


def test_training_multiclass_softmax(tmp_path):
    model, result = _train(tmp_path, "k3", epochs=2, k=3)
    assert model.num_classes == 3
    assert set(result["best_scores"]) >= {"disc_dice", "cup_dice", "disc_iou", "cup_iou"}


def test_bf16_training_learns_and_saves_a_float32_checkpoint(tmp_path):
    model, result = _train(tmp_path, "bf", epochs=4, precision="bf16")
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0]
    assert result["best_score"] > 0.5
    best = load(tmp_path / "bf")
    floats = [v for v in best.state_dict().values() if v.is_floating_point()]
    assert all(v.dtype == torch.float32 for v in floats)
    assert best.config["training"]["precision"] == "bf16"
    # bfloat16 autocast really changes the arithmetic: weights differ from a float32 run.
    ref, _ = _train(tmp_path, "fp", epochs=4)
    pairs = zip(model.parameters(), ref.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)


def test_channels_last_training_matches_the_standard_layout(tmp_path):
    std, r_std = _train(tmp_path, "std", epochs=2)
    cl, r_cl = _train(tmp_path, "cl", epochs=2, channels_last=True)
    for a, b in zip(std.parameters(), cl.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
        assert b.is_contiguous()  # handed back in the standard layout
    assert [h["loss"] for h in r_cl["history"]] == pytest.approx(
        [h["loss"] for h in r_std["history"]], rel=1e-4
    )
    assert load(tmp_path / "cl").config["training"]["channels_last"] is True


def test_training_argument_errors(tmp_path):
    model = build_model("small", width=2)
    data = _easy_dataset(2)
    common = {"out": tmp_path / "m", "regions": {"fg": (1,)}}
    with pytest.raises(ValueError, match="epochs"):
        train_segmentation(model, data, data, epochs=0, **common)
    with pytest.raises(ValueError, match="lr"):
        train_segmentation(model, data, data, epochs=1, lr=0, **common)
    with pytest.raises(ValueError, match="precision.*bf16"):
        train_segmentation(model, data, data, epochs=1, precision="fp16", **common)
    with pytest.raises(ValueError, match="val_set: expected at least one"):
        train_segmentation(model, data, [], epochs=1, **common)
    with pytest.raises(TypeError, match="SegmentationModel"):
        train_segmentation(nn.Conv2d(3, 1, 1), data, data, epochs=1, **common)
    mixed = [data[0], _easy_dataset(1, size=20)[0]]
    with pytest.raises(ValueError, match="different image sizes"):
        train_segmentation(model, mixed, data, epochs=1, batch_size=2, **common)


class _Threshold(nn.Module):
    """Logit = 10 * (channel 0 - 0.5): predicts foreground where the image is bright."""

    def forward(self, x):
        return 10 * (x[:, :1] - 0.5)


def test_evaluate_matches_independent_dice():
    model = SegmentationModel(_Threshold(), num_classes=1, in_channels=3, mean=0.0, std=1.0)
    data = _easy_dataset(5, seed=3)
    # corrupt some pixels so the scores are not trivially 1
    for i, it in enumerate(data):
        it["image"][0, :, : i + 1] = 1.0
    scores = evaluate_segmentation(model, data, regions={"fg": (1,)}, batch_size=2)
    dices, ious = [], []
    for it in data:
        p = (it["image"][0] > 0.5).numpy()
        t = it["mask"].numpy() == 1
        inter = np.logical_and(p, t).sum()
        dices.append(2 * inter / (p.sum() + t.sum()))
        ious.append(inter / np.logical_or(p, t).sum())
    assert scores["fg_dice"] == pytest.approx(np.mean(dices))
    assert scores["fg_iou"] == pytest.approx(np.mean(ious))
    assert scores["mean_dice"] == pytest.approx(np.mean(dices))
    assert scores["nan_count"] == 0


def test_evaluate_errors():
    model = build_model("small", width=2)
    with pytest.raises(ValueError, match="at least one validation item"):
        evaluate_segmentation(model, [], regions={"fg": (1,)})
    with pytest.raises(ValueError, match="regions"):
        evaluate_segmentation(model, _easy_dataset(1), regions={})


def test_training_on_device(tmp_path, device):
    model, result = _train(tmp_path, f"dev_{device.type}", epochs=1, device=device)
    assert next(model.parameters()).device.type == device.type
    assert np.isfinite(result["history"][0]["loss"])


def test_resume_into_a_new_output_keeps_the_best_checkpoint(tmp_path):
    _, first = _train(tmp_path, "first", epochs=2)
    _, second = _train(tmp_path, "second", epochs=2, resume=tmp_path / "first")
    assert second["epochs_run"] == 0
    assert (tmp_path / "second.safetensors").read_bytes() == (
        tmp_path / "first.safetensors"
    ).read_bytes()
    assert load(tmp_path / "second").config["val_scores"] == first["best_scores"]


def test_worker_processes_give_the_same_training(tmp_path):
    a, _ = _train(tmp_path, "w0", epochs=1, workers=0)
    b, _ = _train(tmp_path, "w1", epochs=1, workers=1)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
