"""The evaluation harness: models x datasets x attacks x defences, per sample (SPEC §5).

For every sample it measures the clean prediction, the defended clean prediction
(benign loss), the attacked prediction against the ground truth and against the
target, the defended attacked ("recovered") prediction against the ground truth and
against the clean prediction, defence efficiency, perturbation size, PSNR/SSIM of the
defended images and the time of each stage, and, where the dataset allows, the
diagnosis downstream (CDR error and flipped glaucoma calls; lesion-area error).

Attacks on the bare model are computed once per (model, attack, sample) and reused by
every defence; adaptive attacks (through ``segshield.attacks.Defended``) are computed
once per defence. By default adversarial images follow the FR paper's pipeline: they
are stored as 8-bit PNG and read back, i.e. rounded to the 8-bit grid, before the
defence. Rows go to a :class:`~segshield.evaluation.store.ResultStore` in one atomic
transaction per (batch, attack[, defence]); a killed run re-run with the same
configuration skips every finished row.
"""

from __future__ import annotations

import io
import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from segshield._checks import check_images, check_masks
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.store import KEY_COLUMNS, ResultStore, RowKey
from segshield.metrics import logits_to_mask, psnr, region_scores, ssim
from segshield.utils.progress import progress
from segshield.utils.seed import seed_everything

__all__ = [
    "run_evaluation",
    "quantize_8bit",
    "model_label",
    "dataset_label",
    "mask_to_rgb",
    "png_bytes",
]

log = logging.getLogger(__name__)

# Colours of mask tiles: background, class 1, class 2, ...; ignore (255) is grey.
_PALETTE = np.array(
    [[0, 0, 0], [240, 240, 240], [220, 50, 47], [38, 139, 210], [133, 153, 0], [211, 54, 130]],
    dtype=np.uint8,
)


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round images to the 8-bit grid, as saving to PNG and reading back does.

    Args:
        x: images ``(B, C, H, W)`` in ``[0, 1]``.

    Returns:
        ``round(x * 255)`` clipped to ``[0, 255]``, divided by 255 (same dtype).

    Example:
        >>> quantize_8bit(torch.tensor([[[[0.5, 1.2]]]])).mul(255).tolist()
        [[[[128.0, 255.0]]]]
    """
    check_images(x)
    return (x * 255).round().clamp(0, 255) / 255


def model_label(spec: str) -> str:
    """Short name of a model in result rows: the checkpoint's stem, or the name itself."""
    p = Path(spec)
    return p.stem if p.suffix in (".safetensors", ".json") else p.name or spec


def dataset_label(spec: str) -> str:
    """Short name of a dataset in result rows: ``KIND`` or ``KIND:folder-name``."""
    kind, sep, path = spec.partition(":")
    return kind if not sep else f"{kind}:{Path(path).name or path}"


def mask_to_rgb(mask: torch.Tensor) -> np.ndarray:
    """``(H, W)`` class ids to an ``(H, W, 3)`` uint8 picture (255 = ignore, grey)."""
    m = mask.detach().cpu().numpy()
    out = _PALETTE[np.clip(m, 0, len(_PALETTE) - 1)]
    out[m == 255] = 128
    return out


def png_bytes(arr: np.ndarray) -> bytes:
    """Encode an ``(H, W, C)`` or ``(H, W)`` uint8 array as PNG bytes (in memory)."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _image_rgb(x: torch.Tensor) -> np.ndarray:
    a = (x.detach().float().cpu().clamp(0, 1) * 255).round().clamp(0, 255)
    a = a.permute(1, 2, 0).numpy().astype(np.uint8)
    if a.shape[2] not in (1, 3):
        a = a[:, :, :3] if a.shape[2] > 3 else a[:, :, :1]
    return a


def _perturbation_rgb(delta: torch.Tensor) -> np.ndarray:
    """Amplified perturbation: 0.5 grey plus delta scaled so its max reaches the range."""
    peak = float(delta.abs().max())
    scale = 0.5 / peak if peak > 0 else 0.0
    return _image_rgb((0.5 + delta * scale).clamp(0, 1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sub_seed(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


@dataclass
class _Scores:
    """Mean-over-regions IoU and Dice, plus per-region Dice, of one comparison."""

    iou: torch.Tensor
    dice: torch.Tensor
    per_region: dict[str, torch.Tensor]


def _scores(pred: torch.Tensor, ref: torch.Tensor, regions: dict[str, tuple[int, ...]]) -> _Scores:
    rs = region_scores(pred, ref, regions)
    iou = torch.stack([v["iou"] for v in rs.values()], 0)
    dice = torch.stack([v["dice"] for v in rs.values()], 0)
    return _Scores(
        iou=torch.nanmean(iou, 0) if len(rs) > 1 else iou[0],
        dice=torch.nanmean(dice, 0) if len(rs) > 1 else dice[0],
        per_region={k: v["dice"] for k, v in rs.items()} if len(rs) > 1 else {},
    )


def _put(cols: dict[str, list[float]], name: str, values: torch.Tensor | Sequence[float]) -> None:
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().tolist()
    cols[name] = [float(v) for v in values]


def _score_cols(cols: dict[str, list[float]], stage: str, s: _Scores) -> None:
    _put(cols, f"{stage}_dice", s.dice)
    _put(cols, f"{stage}_iou", s.iou)
    for region, d in s.per_region.items():
        _put(cols, f"{stage}_dice_{region}", d)


class _Downstream:
    """Diagnosis columns ``dx_<stage>_<measure>`` (issue 7), or none when not applicable."""

    def __init__(self, regions: dict[str, tuple[int, ...]], enabled: bool, threshold: float):
        self.kind: str | None = None
        if not enabled:
            return
        if "disc" in regions and "cup" in regions:
            self.kind = "fundus"
        elif set(regions) == {"lesion"}:
            self.kind = "lesion"
        self.threshold = threshold

    def __call__(self, stage: str, pred: torch.Tensor, gt: torch.Tensor) -> dict[str, list[float]]:
        if self.kind is None:
            return {}
        from segshield.diagnosis import downstream_fundus, downstream_lesion

        if self.kind == "fundus":
            values = downstream_fundus(pred, gt, self.threshold)
        else:
            values = downstream_lesion(pred, gt)
        cols: dict[str, list[float]] = {}
        for k, v in values.items():
            if k.endswith("_gt"):
                if stage == "clean":  # the ground truth's value, once per row
                    _put(cols, f"dx_gt_{k[:-3]}", torch.as_tensor(v).double())
                continue
            _put(cols, f"dx_{stage}_{k}", torch.as_tensor(v).double())
        return cols


def _load_model(spec: str, device: torch.device) -> torch.nn.Module:
    from segshield.models import load

    return load(spec)


def _load_data(spec: str, config: EvalConfig, model: torch.nn.Module) -> Any:
    from segshield.data import load_dataset

    size = config.size
    if size is None:
        size = getattr(model, "config", {}).get("input_size")
    if isinstance(size, list):
        size = tuple(size)
    kw = {} if config.n is None else {"n": config.n}
    return load_dataset(spec, size=size, split=config.split, seed=config.seed, **kw)


def _batch(ds: Any, idx: Sequence[int], device: torch.device):
    items = [ds[i] for i in idx]
    x = torch.stack([it["image"] for it in items]).to(device)
    y = torch.stack([torch.as_tensor(it["mask"]) for it in items]).long().to(device)
    names = [str(it["name"]) for it in items]
    return x, y, names


def run_evaluation(
    config: EvalConfig,
    output: str | Path,
    *,
    models: Mapping[str, torch.nn.Module] | None = None,
    datasets: Mapping[str, Any] | None = None,
    on_group: Callable[[int], None] | None = None,
) -> ResultStore:
    """Run (or resume) an evaluation and store one row per sample x model x attack x defence.

    SPEC §5 protocol; FR paper pipeline (Liu et al., MICCAI 2020) with 8-bit PNG
    round trip of the adversarial images unless ``config.png_roundtrip`` is false.

    Args:
        config: what to evaluate (:class:`EvalConfig`).
        output: results folder (``results.sqlite`` + ``manifest.json``); re-running
            with the same configuration resumes, skipping finished rows.
        models: optional models already in memory, keyed by the names used in
            ``config.models`` (used instead of loading checkpoints).
        datasets: optional datasets already in memory, keyed by the specs used in
            ``config.datasets`` (used instead of ``segshield.data.load_dataset``).
        on_group: optional callback receiving the number of rows committed after each
            transaction (progress reporting in callers).

    Returns:
        The open :class:`ResultStore` (close it when done).

    Raises:
        ValueError: the folder holds a different run, or a dataset item is malformed.
        FileNotFoundError: a checkpoint or data folder is missing.

    Example:
        >>> cfg = EvalConfig(models=["demo.safetensors"], datasets=["phantom-derm"], limit=4)
        >>> store = run_evaluation(cfg, "results/")  # doctest: +SKIP
    """
    from segshield.attacks import Defended, get_attack, make_targets
    from segshield.defenses import get_defense

    device = torch.device(config.device)
    store = ResultStore(output)
    resumed = store.start_run(config.to_dict(), config.digest(), config.seed)
    if resumed:
        log.info("resuming %s: %d finished rows kept", output, len(store))
    done = store.done_keys()
    defenses = {spec: get_defense(spec).to(device).eval() for spec in config.defenses}
    attacks = [(spec, False, get_attack(spec)) for spec in config.attacks]
    attacks += [(spec, True, get_attack(spec)) for spec in config.adaptive]
    store.update_manifest(
        defenses={s: d.spec() for s, d in defenses.items()},
        adaptive_attacks=list(config.adaptive),
        defense_gradients={s: getattr(d, "gradient", None) for s, d in defenses.items()},
    )
    model_info: dict[str, Any] = {}
    for i, mspec in enumerate(config.models):
        model = models[mspec] if models is not None and mspec in models else None
        if model is None:
            model = _load_model(mspec, device)
        model = model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        mname = model_label(mspec)
        model_info[mname] = getattr(model, "config", {})
        dspecs = [config.datasets[i]] if config.pairing == "zip" else config.datasets
        for dspec in dspecs:
            ds = datasets[dspec] if datasets is not None and dspec in datasets else None
            if ds is None:
                ds = _load_data(dspec, config, model)
            _evaluate_pair(
                config,
                store,
                done,
                model,
                mname,
                ds,
                dataset_label(dspec),
                defenses,
                attacks,
                device,
                Defended,
                make_targets,
                on_group,
            )
    if config.classifiers:
        _evaluate_classifiers(config, store, device, datasets or {})
    store.update_manifest(models=model_info)
    return store


class _Subset(list):
    """Items of a dataset with its ``kind`` (what ``evaluate_classifier`` reads)."""

    def __init__(self, items: list[dict[str, Any]], kind: str) -> None:
        super().__init__(items)
        self.kind = kind


#: evaluate_classifier's per-sample columns -> result columns (means are accuracies).
_CLASSIFIER_COLUMNS = {
    "label": "label",
    "clean_correct": "clean_acc",
    "defended_clean_correct": "benign_acc",
    "attacked_correct": "attacked_acc",
    "defended_correct": "recovered_acc",
    "attack_success": "attack_success",
    "l2": "l2",
    "linf": "linf",
    "steps": "attack_steps",
}


def _evaluate_classifiers(
    config: EvalConfig,
    store: ResultStore,
    device: torch.device,
    datasets: Mapping[str, Any],
) -> None:
    """Classifier rows (issue 7) in the ``classifier`` table, resumable per batch."""
    from segshield.classification import evaluate_classifier, load_classifier
    from segshield.defenses import get_defense

    done = store.done_keys("classifier")
    canonical = {get_defense(d).spec(): d for d in config.defenses}
    modes = (False, True) if config.classifier_adaptive else (False,)
    for cspec in config.classifiers:
        model = load_classifier(cspec, map_location=device).eval()
        cname = model_label(cspec)
        for dspec in config.datasets:
            ds = datasets[dspec] if dspec in datasets else _load_data(dspec, config, model)
            dname = dataset_label(dspec)
            n = len(ds) if config.limit is None else min(len(ds), config.limit)
            names = [str(ds[i]["name"]) for i in range(n)]
            starts = range(0, n, config.batch_size)
            jobs = [(a, ad, s) for ad in modes for a in config.classifier_attacks for s in starts]
            for aspec, adaptive, start in progress(jobs, desc=f"{cname} on {dname}"):
                idx = [
                    i
                    for i in range(start, min(start + config.batch_size, n))
                    if any(
                        (cname, dname, aspec, int(adaptive), d, names[i]) not in done
                        for d in config.defenses
                    )
                ]
                if not idx:
                    continue
                out = evaluate_classifier(
                    model,
                    _Subset([ds[i] for i in idx], str(getattr(ds, "kind", "custom"))),
                    [aspec],
                    list(config.defenses),
                    seed=_sub_seed(config.seed, cname, dname, aspec, adaptive, start) % 2**31,
                    batch_size=len(idx),
                    threshold=config.glaucoma_threshold,
                    adaptive=adaptive,
                    png_roundtrip=config.png_roundtrip,
                    model_name=cname,
                )
                rows = []
                for r in out:
                    key = (cname, dname, aspec, int(adaptive), canonical[r["defense"]], r["sample"])
                    if key in done:
                        continue
                    row = dict(zip(KEY_COLUMNS, key, strict=True))
                    row.update({new: float(r[old]) for old, new in _CLASSIFIER_COLUMNS.items()})
                    rows.append(row)
                store.add(rows, table="classifier")
                done.update(tuple(r[c] for c in KEY_COLUMNS) for r in rows)


def _evaluate_pair(
    config: EvalConfig,
    store: ResultStore,
    done: set[RowKey],
    model: torch.nn.Module,
    mname: str,
    ds: Any,
    dname: str,
    defenses: dict[str, torch.nn.Module],
    attacks: list[tuple[str, bool, Callable[..., Any]]],
    device: torch.device,
    defended_cls: Callable[..., torch.nn.Module],
    make_targets: Callable[..., torch.Tensor],
    on_group: Callable[[int], None] | None,
) -> None:
    n = len(ds) if config.limit is None else min(len(ds), config.limit)
    regions = dict(ds.regions)
    downstream = _Downstream(regions, config.downstream, config.glaucoma_threshold)
    names_all = [str(ds[i]["name"]) for i in range(n)]
    targets_all = None
    if config.target is not None:
        masks_all = torch.stack([torch.as_tensor(ds[i]["mask"]) for i in range(n)]).long()
        targets_all = make_targets(config.target, masks_all, seed=config.seed)
        check_masks(targets_all, "target masks", like=masks_all)

    def key(attack: str, adaptive: bool, defense: str, sample: str) -> RowKey:
        return (mname, dname, attack, int(adaptive), defense, sample)

    starts = list(range(0, n, config.batch_size))
    for start in progress(starts, desc=f"{mname} on {dname}", unit="batch"):
        combos = [(a, ad, d) for a, ad, _ in attacks for d in defenses]
        # samples with any unfinished row (after a kill, the rest of the batch is done)
        idx = [
            i
            for i in range(start, min(start + config.batch_size, n))
            if any(key(*c, names_all[i]) not in done for c in combos)
        ]
        if not idx:
            continue
        names = [names_all[i] for i in idx]
        missing = {c for c in combos if any(key(*c, s) not in done for s in names)}
        x, y, _ = _batch(ds, idx, device)
        check_images(x, f"{dname} images", check_range=True)
        check_masks(y, f"{dname} masks", like=x)
        tgt = None if targets_all is None else targets_all[idx].to(device)
        b = len(idx)
        base: dict[str, list[float]] = {}
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            clean_pred = logits_to_mask(model(x))
        _sync(device)
        _put(base, "t_clean", [(time.perf_counter() - t0) / b] * b)
        clean = _scores(clean_pred, y, regions)
        _score_cols(base, "clean", clean)
        base.update(downstream("clean", clean_pred, y))
        needed = sorted({d for _, _, d in missing}, key=list(defenses).index)
        benign = {d: _benign_cols(model, defenses[d], x, y, clean, regions, device) for d in needed}

        for aspec, adaptive, attack in attacks:
            todo = [d for d in defenses if (aspec, adaptive, d) in missing]
            if not todo:
                continue
            groups = [[d] for d in todo] if adaptive else [todo]
            for group in groups:
                target_model = model
                if adaptive:
                    d = defenses[group[0]]
                    eot = config.eot_samples if getattr(d, "randomized", False) else 1
                    target_model = defended_cls(model, d, eot_samples=eot).eval()
                seed_everything(_sub_seed(config.seed, mname, dname, aspec, adaptive, start))
                _sync(device)
                t = time.perf_counter()
                a_tgt = tgt if getattr(attack, "allows_target", True) else None
                result = attack(target_model, x, masks=y, target_masks=a_tgt)
                _sync(device)
                t_attack = (time.perf_counter() - t) / b
                adv = result.adversarial.detach()
                if config.png_roundtrip:
                    adv = quantize_8bit(adv)
                acols: dict[str, list[float]] = {}
                _put(acols, "t_attack", [t_attack] * b)
                _put(acols, "attack_steps", result.stats["steps"])
                _put(acols, "attack_success", result.stats["success"].double())
                delta = (adv - x).flatten(1)
                _put(acols, "l2", delta.double().norm(dim=1))
                _put(acols, "linf", delta.abs().amax(dim=1))
                _put(acols, "adv_psnr", psnr(adv, x))
                with torch.no_grad():
                    att_pred = logits_to_mask(model(adv))
                _score_cols(acols, "attacked", _scores(att_pred, y, regions))
                acols.update(downstream("attacked", att_pred, y))
                if a_tgt is not None:
                    st = _scores(att_pred, a_tgt, regions)
                    _put(acols, "attack_target_iou", st.iou)
                    _put(acols, "attack_target_dice", st.dice)
                rows: list[dict[str, Any]] = []
                examples: list[tuple[RowKey, str, bytes]] = []
                for dspec in group:
                    dcols = dict(benign[dspec])
                    _sync(device)
                    t = time.perf_counter()
                    with torch.no_grad():
                        rec_img = defenses[dspec](adv)
                        rec_pred = logits_to_mask(model(rec_img))
                    _sync(device)
                    _put(dcols, "t_recover", [(time.perf_counter() - t) / b] * b)
                    rec = _scores(rec_pred, y, regions)
                    _score_cols(dcols, "recovered", rec)
                    _put(dcols, "recovered_clean_dice", _scores(rec_pred, clean_pred, regions).dice)
                    if a_tgt is not None:
                        _put(dcols, "recovered_target_iou", _scores(rec_pred, a_tgt, regions).iou)
                    eff = torch.where(
                        clean.dice > 0, rec.dice / clean.dice.clamp_min(1e-12), math.nan
                    )
                    _put(dcols, "efficiency", eff)
                    _put(dcols, "recovered_psnr", psnr(rec_img, x))
                    _put(dcols, "recovered_ssim", _ssim_or_nan(rec_img, x))
                    dcols.update(downstream("recovered", rec_pred, y))
                    cols = {**base, **acols, **dcols}
                    for j, sample in enumerate(names):
                        k = key(aspec, adaptive, dspec, sample)
                        if k in done:
                            continue
                        row = dict(zip(KEY_COLUMNS, k, strict=True))
                        row.update({c: v[j] for c, v in cols.items()})
                        rows.append(row)
                        if idx[j] < config.examples:
                            examples += _example_tiles(
                                k,
                                x[j],
                                adv[j],
                                rec_img[j],
                                y[j],
                                clean_pred[j],
                                att_pred[j],
                                rec_pred[j],
                                None if a_tgt is None else a_tgt[j],
                            )
                store.add(rows, examples)
                done.update(tuple(r[c] for c in KEY_COLUMNS) for r in rows)
                if on_group is not None:
                    on_group(len(rows))


def _benign_cols(
    model: torch.nn.Module,
    defense: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    clean: _Scores,
    regions: dict[str, tuple[int, ...]],
    device: torch.device,
) -> dict[str, list[float]]:
    """Columns of the defended clean image: benign scores, loss, PSNR/SSIM, time."""
    b = x.shape[0]
    cols: dict[str, list[float]] = {}
    _sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        xd = defense(x)
    _sync(device)
    _put(cols, "t_defense", [(time.perf_counter() - t) / b] * b)
    with torch.no_grad():
        pred = logits_to_mask(model(xd))
    s = _scores(pred, y, regions)
    _score_cols(cols, "benign", s)
    _put(cols, "benign_loss", clean.dice - s.dice)
    _put(cols, "benign_psnr", psnr(xd, x))
    _put(cols, "benign_ssim", _ssim_or_nan(xd, x))
    return cols


def _ssim_or_nan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM with a window no larger than the image (7 for images under 11 pixels)."""
    side = min(a.shape[-2:])
    win = 11 if side >= 11 else (7 if side >= 7 else 0)
    if win == 0:
        return torch.full((a.shape[0],), math.nan, dtype=torch.float64)
    return ssim(a, b, win_size=win)


def _example_tiles(
    key: RowKey,
    image: torch.Tensor,
    adv: torch.Tensor,
    defended: torch.Tensor,
    gt: torch.Tensor,
    clean: torch.Tensor,
    attacked: torch.Tensor,
    recovered: torch.Tensor,
    target: torch.Tensor | None,
) -> list[tuple[RowKey, str, bytes]]:
    tiles = {
        "image": _image_rgb(image),
        "adversarial": _image_rgb(adv),
        "perturbation": _perturbation_rgb(adv - image),
        "defended": _image_rgb(defended),
        "mask_gt": mask_to_rgb(gt),
    }
    if target is not None:
        tiles["mask_target"] = mask_to_rgb(target)
    tiles.update(
        mask_clean=mask_to_rgb(clean),
        mask_attacked=mask_to_rgb(attacked),
        mask_recovered=mask_to_rgb(recovered),
    )
    return [(key, kind, png_bytes(arr)) for kind, arr in tiles.items()]
