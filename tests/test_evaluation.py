"""Evaluation harness and results store, on tiny stand-in models, data, attacks, defences.

The stand-ins follow docs/ARCHITECTURE.md contracts; they are patched into
``segshield.attacks`` / ``segshield.defenses`` so the harness is tested on its own.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segshield.evaluation.config import EvalConfig, load_config
from segshield.evaluation.harness import quantize_8bit, run_evaluation
from segshield.evaluation.store import ResultStore

SIZE = 16


class ToyModel(nn.Module):
    """Foreground where the red channel is bright: logit = 20 (r - 0.5)."""

    num_classes = 1
    config = {"architecture": "toy", "input_size": SIZE}

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * (x[:, :1] - 0.5)


class ToyData:
    """Squares of random size; red = 0.8 inside, 0.2 outside, on the 8-bit grid."""

    kind = "toy"
    num_classes = 2
    class_names = ["background", "lesion"]
    regions = {"lesion": (1,)}

    def __init__(self, n: int = 6, seed: int = 0) -> None:
        g = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            m = np.zeros((SIZE, SIZE), dtype=np.int64)
            a, b = g.integers(1, 6, size=2)
            m[a : a + 7, b : b + 6] = 1
            img = np.full((3, SIZE, SIZE), 0.2, dtype=np.float32)
            img[0][m == 1] = 0.8
            img[1:] = np.round(g.uniform(0, 1, (2, SIZE, SIZE)) * 255) / 255
            img = np.round(img * 255) / 255
            self.items.append(
                {
                    "image": torch.from_numpy(img.astype(np.float32)),
                    "mask": torch.from_numpy(m),
                    "name": f"toy{i:03d}",
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class Result:
    def __init__(self, adversarial, stats):
        self.adversarial = adversarial
        self.stats = stats


CALLS: list[tuple[str, bool, int]] = []


class PaintAttack:
    """Paints the target into the red channel (perfect targeted attack) plus ``eps``."""

    allows_target = True

    def __init__(self, eps: float = 0.0, delay: float = 0.0) -> None:
        self.eps, self.delay = eps, delay

    def __call__(self, model, images, masks=None, target_masks=None):
        CALLS.append(("paint", bool(getattr(model, "is_defended", False)), images.shape[0]))
        if self.delay:
            time.sleep(self.delay)
        adv = images.clone()
        adv[:, 0] = torch.where(target_masks == 1, 0.8, 0.2)
        adv = (adv + self.eps).clamp(0, 1)
        b = images.shape[0]
        return Result(
            adv,
            {"steps": torch.ones(b, dtype=torch.long), "success": torch.ones(b, dtype=torch.bool)},
        )


class NoopAttack:
    allows_target = False

    def __call__(self, model, images, masks=None, target_masks=None):
        CALLS.append(("noop", bool(getattr(model, "is_defended", False)), images.shape[0]))
        assert target_masks is None
        b = images.shape[0]
        return Result(
            images.clone(),
            {
                "steps": torch.zeros(b, dtype=torch.long),
                "success": torch.zeros(b, dtype=torch.bool),
            },
        )


class Identity(nn.Module):
    gradient = "exact"

    def forward(self, x):
        return x

    def spec(self):
        return "none"


class Flatten(nn.Module):
    """Sets the red channel to its mean: destroys the signal (benign loss)."""

    gradient = "bpda"

    def forward(self, x):
        out = x.clone()
        out[:, 0] = x[:, 0].mean(dim=(1, 2), keepdim=True)
        return out

    def spec(self):
        return "flatten"


class Defended(nn.Module):
    is_defended = True

    def __init__(self, model, defense, eot_samples=1):
        super().__init__()
        self.model, self.defense, self.eot_samples = model, defense, eot_samples

    def forward(self, x):
        return self.model(self.defense(x))


def get_attack(spec):
    name, _, args = spec.partition(":")
    kw = dict(a.split("=") for a in args.split(",") if a)
    if name == "paint":
        return PaintAttack(**{k: float(v) for k, v in kw.items()})
    if name == "noop":
        return NoopAttack()
    raise ValueError(f"unknown attack {spec}")


def get_defense(spec):
    return {"none": Identity, "flatten": Flatten}[spec]()


def make_targets(kind, masks, seed=0):
    assert kind == "other-gt"
    return torch.roll(masks, 1, dims=0)


def install_toys(monkeypatch=None) -> None:
    """Patch the stand-ins into the segshield packages (monkeypatch or plain setattr)."""
    import segshield.attacks
    import segshield.defenses

    patches = [
        (segshield.attacks, "get_attack", get_attack),
        (segshield.attacks, "Defended", Defended),
        (segshield.attacks, "make_targets", make_targets),
        (segshield.defenses, "get_defense", get_defense),
    ]
    for mod, name, value in patches:
        if monkeypatch is not None:
            monkeypatch.setattr(mod, name, value, raising=False)
        else:
            setattr(mod, name, value)


def toy_config(**kw) -> EvalConfig:
    base = dict(
        models=["toy"],
        datasets=["toy"],
        attacks=["paint"],
        adaptive=[],
        defenses=["flatten"],
        batch_size=4,
        examples=1,
        split="all",
    )
    base.update(kw)
    return EvalConfig(**base)


@pytest.fixture
def toys(monkeypatch):
    install_toys(monkeypatch)
    CALLS.clear()
    return {"models": {"toy": ToyModel()}, "datasets": {"toy": ToyData(6)}}


def _dice(p: np.ndarray, t: np.ndarray) -> float:
    inter = np.logical_and(p == 1, t == 1).sum()
    den = (p == 1).sum() + (t == 1).sum()
    return 1.0 if den == 0 else 2 * inter / den


def test_rows_and_reference_scores(tmp_path, toys):
    cfg = toy_config(adaptive=["paint"])
    store = run_evaluation(cfg, tmp_path / "r", **toys)
    rows = store.rows()
    # 6 samples x (1 plain + 1 adaptive) x 2 defences (identity added)
    assert len(rows) == 6 * 2 * 2
    keys = {(r["attack"], r["adaptive"], r["defense"], r["sample"]) for r in rows}
    assert len(keys) == len(rows)
    # plain attack: once per batch (2 batches); adaptive: once per batch and defence
    plain = [c for c in CALLS if not c[1]]
    adaptive = [c for c in CALLS if c[1]]
    assert len(plain) == 2 and len(adaptive) == 4
    ds = toys["datasets"]["toy"]
    masks = [ds[i]["mask"].numpy() for i in range(6)]
    by = {(r["attack"], r["adaptive"], r["defense"], r["sample"]): r for r in rows}
    for i in range(6):
        name = f"toy{i:03d}"
        target = masks[(i - 1) % 6]
        r = by[("paint", False, "none", name)]
        assert r["clean_dice"] == pytest.approx(1.0)
        assert r["benign_dice"] == pytest.approx(r["clean_dice"])
        assert r["benign_loss"] == pytest.approx(0.0)
        assert r["attack_target_iou"] == pytest.approx(1.0)
        assert r["attacked_dice"] == pytest.approx(_dice(target, masks[i]))
        assert r["recovered_dice"] == pytest.approx(r["attacked_dice"])
        assert r["efficiency"] == pytest.approx(r["recovered_dice"] / r["clean_dice"])
        assert math.isinf(r["benign_psnr"]) and r["benign_ssim"] == pytest.approx(1.0)
        delta = np.abs(np.where(target == 1, 0.8, 0.2) - np.where(masks[i] == 1, 0.8, 0.2))
        assert r["linf"] == pytest.approx(delta.max(), abs=1e-6)
        assert r["l2"] == pytest.approx(np.sqrt((delta**2).sum()), rel=1e-5)
        # the flatten defence removes the lesion: empty prediction vs non-empty gt
        f = by[("paint", False, "flatten", name)]
        assert f["benign_dice"] == pytest.approx(0.0)
        assert f["benign_loss"] == pytest.approx(1.0)
        assert f["recovered_dice"] == pytest.approx(0.0)
        assert f["benign_psnr"] < 100
        # downstream lesion-area error of the attacked prediction, reference in numpy
        ref = (target.sum() - masks[i].sum()) / masks[i].sum()
        assert r["dx_attacked_area_rel_error"] == pytest.approx(ref)
        assert r["dx_clean_area_rel_error"] == pytest.approx(0.0)
    # examples: first sample only, every (attack, defence)
    ex = store.examples()
    assert {k[5] for k, _ in ex} == {"toy000"} and len(ex) == 4
    assert set(ex[0][1]) >= {"image", "adversarial", "perturbation", "defended", "mask_gt"}
    manifest = store.manifest()
    assert manifest["config"]["seed"] == 0 and "torch" in manifest["versions"]
    assert manifest["machine"]["cpu_count"] == os.cpu_count()
    store.close()


def test_untargeted_attack_gets_no_target(tmp_path, toys):
    store = run_evaluation(toy_config(attacks=["noop"]), tmp_path, **toys)
    rows = store.rows()
    assert rows and all("attack_target_iou" not in r for r in rows)
    for r in rows:
        assert r["l2"] == 0 and r["attacked_dice"] == pytest.approx(r["clean_dice"])
        # vs the clean prediction: identical without defence, nothing left after flatten
        want = 1.0 if r["defense"] == "none" else 0.0
        assert r["recovered_clean_dice"] == pytest.approx(want)


def test_png_roundtrip_switch(tmp_path, toys):
    # +0.4/255 rounds away on the 8-bit grid; without the round trip it stays
    on = run_evaluation(toy_config(attacks=["noop", "paint:eps=0.0015"]), tmp_path / "on", **toys)
    off = run_evaluation(
        toy_config(attacks=["noop", "paint:eps=0.0015"], png_roundtrip=False),
        tmp_path / "off",
        **toys,
    )
    linf_on = {r["sample"]: r["linf"] for r in on.rows() if r["attack"] != "noop"}
    linf_off = {r["sample"]: r["linf"] for r in off.rows() if r["attack"] != "noop"}
    for s in linf_on:
        assert abs(linf_on[s] * 255 - round(linf_on[s] * 255)) < 1e-4  # on the 8-bit grid
        assert linf_off[s] != pytest.approx(linf_on[s], abs=1e-6)
    x = torch.rand(2, 3, 4, 4)
    q = quantize_8bit(x)
    assert torch.equal(q, quantize_8bit(q)) and (q - x).abs().max() <= 0.5 / 255 + 1e-7


def test_resume_skips_finished_rows(tmp_path, toys):
    cfg = toy_config(adaptive=["paint"])
    run_evaluation(cfg, tmp_path, **toys).close()
    CALLS.clear()
    store = run_evaluation(cfg, tmp_path, **toys)
    assert CALLS == [] and len(store) == 24
    store.close()
    # drop the rows of one sample: only its batch is recomputed, nothing duplicated
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        conn.execute("DELETE FROM results WHERE sample = 'toy005'")
    CALLS.clear()
    store = run_evaluation(cfg, tmp_path, **toys)
    assert len(store) == 24
    assert all(c[2] == 1 for c in CALLS) and len(CALLS) == 3  # plain + 2 adaptive, 1 sample
    assert store.manifest()["resumed"]


def test_different_config_refused(tmp_path, toys):
    run_evaluation(toy_config(), tmp_path, **toys).close()
    with pytest.raises(ValueError, match="different configuration"):
        run_evaluation(toy_config(seed=3), tmp_path, **toys)


def test_store_nan_and_duplicates(tmp_path):
    store = ResultStore(tmp_path)
    row = dict(model="m", dataset="d", attack="a", adaptive=False, defense="x", sample="s")
    store.add([{**row, "clean_dice": math.nan, "t": 1.5}])
    got = store.rows()[0]
    assert math.isnan(got["clean_dice"]) and got["t"] == 1.5 and got["adaptive"] is False
    with pytest.raises(sqlite3.IntegrityError):
        store.add([{**row, "sample": "s2"}, {**row, "clean_dice": 0.5}])
    assert len(store) == 1  # the failed transaction left nothing behind
    with pytest.raises(ValueError, match="missing key"):
        store.add([{"model": "m"}])
    with pytest.raises(ValueError, match="metric name"):
        store.add([{**row, "sample": "s3", "Bad-Name": 1.0}])
    store.close()
    with pytest.raises(FileNotFoundError, match="results.sqlite"):
        ResultStore(tmp_path / "nothing", readonly=True)
    ro = ResultStore(tmp_path, readonly=True)
    with pytest.raises(ValueError, match="read-only"):
        ro.add([])


def test_config_validation_and_files(tmp_path):
    with pytest.raises(ValueError, match="models"):
        EvalConfig(models=[], datasets=["d"])
    with pytest.raises(ValueError, match="datasets"):
        EvalConfig(models=["m"], datasets=[])
    with pytest.raises(ValueError, match="attacks"):
        EvalConfig(models=["m"], datasets=["d"], attacks=[])
    with pytest.raises(ValueError, match="split"):
        EvalConfig(models=["m"], datasets=["d"], split="dev")
    with pytest.raises(ValueError, match="limit"):
        EvalConfig(models=["m"], datasets=["d"], limit=0)
    with pytest.raises(ValueError, match="glaucoma_threshold"):
        EvalConfig(models=["m"], datasets=["d"], glaucoma_threshold=1.0)
    with pytest.raises(TypeError, match="png_roundtrip"):
        EvalConfig(models=["m"], datasets=["d"], png_roundtrip="yes")
    with pytest.raises(TypeError, match="list of strings"):
        EvalConfig(models=[1], datasets=["d"])
    with pytest.raises(ValueError, match="unknown setting.*valid: models"):
        EvalConfig.from_dict({"models": ["m"], "datasets": ["d"], "atacks": []})
    with pytest.raises(ValueError, match="missing required"):
        EvalConfig.from_dict({"models": ["m"]})
    cfg = EvalConfig(models=["m"], datasets=["d"], defenses=["fr"])
    assert cfg.defenses == ["fr", "none"]
    assert cfg.digest() != EvalConfig(models=["m"], datasets=["d"], seed=1).digest()
    y = tmp_path / "exp.yaml"
    y.write_text("models: [m.safetensors]\ndatasets: [phantom-derm]\nlimit: 4\n")
    got = load_config(y, seed=5, limit=None)
    assert (got.models, got.limit, got.seed) == (["m.safetensors"], 4, 5)
    j = tmp_path / "exp.json"
    j.write_text(json.dumps({"models": ["m"], "datasets": ["d"], "batch_size": 2}))
    assert load_config(j).batch_size == 2
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_config(bad)
    lst = tmp_path / "list.json"
    lst.write_text("[1]")
    with pytest.raises(ValueError, match="mapping"):
        load_config(lst)


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import test_evaluation as t
t.install_toys()
cfg = t.toy_config(attacks=["paint:delay=0.15"], batch_size=1, examples=0)
store = t.run_evaluation(cfg, {out!r}, models={{"toy": t.ToyModel()}},
                         datasets={{"toy": t.ToyData(12)}})
print("calls", len(t.CALLS))
"""


def test_killed_subprocess_resumes(tmp_path):
    out = tmp_path / "res"
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "SEGSHIELD_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    db = out / "results.sqlite"
    deadline = time.monotonic() + 60
    n = 0
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                try:
                    n = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:
                    n = 0
            if n >= 4:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 4 <= n < 24, f"expected the run to be killed mid-way, got {n} rows"
    with ResultStore(out, readonly=True) as store:
        first = len(store)
    assert first < 24
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    calls = int(done.stdout.split()[-1])
    with ResultStore(out, readonly=True) as store:
        rows = store.rows()
    keys = [(r["sample"], r["defense"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24  # 12 samples x 2 defences, no duplicates
    # only the samples without rows were attacked again (one call per sample)
    assert calls == 12 - first // 2


def test_classifier_rows(tmp_path, monkeypatch):
    """Classifier rows with the real classification pieces, resumable."""
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    from segshield.data import load_dataset
    from segshield.data.labels import item_label
    from segshield.models import build_model, save

    torch.manual_seed(0)
    clf = build_model("cnn", task="classify", width=2, depth=1)
    stem = tmp_path / "clf"
    save(clf, stem)
    cfg = EvalConfig(
        models=[],
        classifiers=[str(stem)],
        datasets=["phantom-fundus"],
        classifier_attacks=["fgsm:eps=0.03"],
        defenses=["bitdepth:bits=3"],
        size=16,
        n=20,
        split="all",
        limit=3,
        batch_size=2,
    )
    store = run_evaluation(cfg, tmp_path / "r")
    rows = store.rows("classifier")
    assert store.rows() == []  # no segmentation rows
    # 3 samples x 2 defences x (plain + adaptive)
    assert len(rows) == 12
    assert {(r["adaptive"], r["defense"]) for r in rows} == {
        (a, d) for a in (False, True) for d in ("bitdepth:bits=3", "none")
    }
    ds = load_dataset("phantom-fundus", size=16, n=20, split="all")
    clf.eval()
    with torch.no_grad():
        for r in rows:
            item = next(ds[i] for i in range(3) if ds[i]["name"] == r["sample"])
            label = item_label(item, "glaucoma")
            pred = int(clf(item["image"][None]).argmax(1))
            assert r["label"] == label and r["clean_acc"] == float(pred == label)
            if r["defense"] == "none":
                assert r["benign_acc"] == r["clean_acc"]
                assert r["recovered_acc"] == r["attacked_acc"]
            assert 0 < r["linf"] <= 0.03 + 1e-6
    store.close()
    again = run_evaluation(cfg, tmp_path / "r")
    assert len(again.rows("classifier")) == 12
    again.close()
    from segshield.evaluation.report import render_report

    html = render_report(tmp_path / "r", tmp_path / "r.html").read_text()
    assert "<h2>Classifiers</h2>" in html and "recovered_acc" in html


def test_demo_model_training_is_reproducible(tmp_path):
    """Two fresh caches train bit-identical models (initial weights are seeded too)."""
    from safetensors.torch import load_file

    from segshield.evaluation.demo import DemoSettings, cached_model

    settings = DemoSettings(size=16, width=2, epochs=1, n_train=8)
    a = load_file(cached_model("phantom-derm", settings, cache_dir=tmp_path / "a"))
    b = load_file(cached_model("phantom-derm", settings, cache_dir=tmp_path / "b"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
