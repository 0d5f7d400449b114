"""The demo's protocol keeps what makes its fundus rows meaningful (cheap checks, no training).

On the whole fundus photograph at the demo's 64x64 the disc is about 12 rows tall (one
row of error moves the vertical CDR by about 0.08) and another eye's disc, the
``other-gt`` target, lies on the other side of the image for about half the images:
ASMA's step grows with the IoU with the target, stays at ``tau`` while that IoU is 0,
and those images ended with a target IoU of exactly 0. These tests fail if the demo goes
back to such a set.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from segshield.attacks import make_targets
from segshield.data import load_dataset, make_fundus_phantom
from segshield.data._pairs import split_samples
from segshield.evaluation.demo import DEMO_DATASETS, DemoSettings


def _demo_masks(view: str, settings: DemoSettings) -> torch.Tensor:
    """Masks of the demo's validation images (any ``n_eval`` of them may be evaluated),
    drawn alone rather than all 200 phantoms."""
    n = settings.n_train or 200
    names = [SimpleNamespace(name=f"{i:03d}", index=i) for i in range(n)]
    val = split_samples(names, "val", settings.seed)
    size, seed = settings.size, settings.seed
    draw = [make_fundus_phantom(size, seed=seed, index=s.index, view=view).mask for s in val]
    return torch.stack([torch.from_numpy(m.astype("int64")) for m in draw])


def test_demo_masks_are_the_loaders():
    ds = load_dataset("phantom-fundus-roi", size=16, split="val", seed=0, n=30)
    masks = _demo_masks("roi", DemoSettings(size=16, n_train=30))
    assert torch.equal(masks, torch.stack([ds[i]["mask"] for i in range(len(ds))]))


def _rows(mask: torch.Tensor) -> int:
    return int(mask.any(1).sum())


def _overlaps(masks: torch.Tensor, seed: int) -> list[int]:
    targets = make_targets("other-gt", masks, seed=seed)
    return [int(((m >= 1) & (t >= 1)).sum()) for m, t in zip(masks, targets, strict=True)]


def test_demo_fundus_targets_overlap_and_the_disc_resolves_the_cdr():
    settings = DemoSettings()
    fundus = [d for d in DEMO_DATASETS if d.startswith("phantom-fundus")]
    assert fundus == ["phantom-fundus-roi"]
    masks = _demo_masks("roi", settings)
    assert len(masks) >= settings.n_eval
    # one row of error moves the CDR by at most 1/20 = 0.05
    assert min(_rows(m >= 1) for m in masks) >= 20
    # every target disc overlaps the image's own disc (any subset, any derangement seed)
    for seed in range(5):
        assert min(_overlaps(masks, seed)) > 0
        assert min(_overlaps(masks[: settings.n_eval], seed)) > 0


def test_the_whole_photograph_fails_both_checks():
    """The reference the checks above are measured against: the ``phantom-fundus`` view."""
    settings = DemoSettings()
    masks = _demo_masks("full", settings)
    assert max(_rows(m >= 1) for m in masks) < 16
    assert min(_overlaps(masks[: settings.n_eval], settings.seed)) == 0


def test_demo_epochs_per_data_set(tmp_path, monkeypatch):
    """``epochs=None`` trains each set for its own number (the fundus model longer, for its
    CDR); an explicit ``epochs`` applies to every set; the epochs join the cache key."""
    from segshield import training
    from segshield.evaluation import demo

    seen: list[int] = []

    def fake_train(model, train, val, *, epochs, out, **kw):
        seen.append(epochs)
        from segshield.models.checkpoint import save

        save(model, out)
        return {"best_scores": {}}

    monkeypatch.setattr(training, "train_segmentation", fake_train)
    small = {"size": 16, "width": 2, "n_train": 8}
    paths = [demo.cached_model(d, DemoSettings(**small), tmp_path) for d in DEMO_DATASETS]
    assert seen == [demo.DEMO_EPOCHS[d] for d in DEMO_DATASETS] == [15, 30]
    again = demo.cached_model(DEMO_DATASETS[1], DemoSettings(**small, epochs=30), tmp_path)
    assert again == paths[1] and len(seen) == 2  # same settings, same cached file
    demo.cached_model(DEMO_DATASETS[1], DemoSettings(**small, epochs=2), tmp_path)
    assert seen[-1] == 2
    assert DemoSettings(epochs=7).epochs_for("phantom-derm") == 7
    with pytest.raises(ValueError, match="epochs"):
        DemoSettings(epochs=0)
