"""Evaluation harness: models x datasets x attacks x defences per sample (docs/ALGORITHMS.md §5).

Per sample: the clean and the defended clean (benign) prediction, the attacked one
against the ground truth and the target, the defended attacked ("recovered") one against
the ground truth and the clean prediction, efficiency, perturbation size, PSNR/SSIM,
the time of each stage and, where the data allow, the diagnosis downstream.

Attacks on the bare model are computed once per (model, attack, sample) and reused by
every defence; adaptive attacks (through ``segshield.attacks.Defended``) are computed
once per defence. By default adversarial images follow the FR paper's pipeline: they
are stored as 8-bit PNG and read back, i.e. rounded to the 8-bit grid, before the
defence. Rows go to a :class:`~segshield.evaluation.store.ResultStore` in one atomic
transaction per (batch, attack[, defence]); a killed run re-run with the same
configuration skips every finished row.

A model file that :func:`segshield.models.wrap` reads (ONNX, TorchScript) is evaluated
like a checkpoint. A model without gradients (ONNX) is not attacked (one warning; the
manifest's ``skipped_attacks``); its clean and benign scores go under attack ``none``,
as for any model when ``config.attacks`` holds it. An adaptive attack that cannot run
through a defence (DCT-PGD through one without a table) is skipped there, with a
warning. With ``config.worst_case`` the worst case per sample (``worst_case_rows``) is
derived from the stored rows after each (model, dataset), in one transaction.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from segshield._checks import check_images, check_masks
from segshield.evaluation.classify import attack_classifier_batch, label_task, resolve_attacks
from segshield.evaluation.config import NO_ATTACK, EvalConfig
from segshield.evaluation.model_specs import (
    WRAPPED_SUFFIXES,
    dataset_label,
    load_model,
    model_label,
)
from segshield.evaluation.samples import evaluated_items
from segshield.evaluation.scoring import (
    ClassificationScorer,
    SegmentationScorer,
    attack_batch,
    cannot_run,
    put,
    timed,
)
from segshield.evaluation.store import KEY_COLUMNS, ResultStore, RowKey
from segshield.evaluation.tiles import example_tiles, mask_to_rgb, png_bytes, quantize_8bit
from segshield.evaluation.worst_case import worst_case_rows
from segshield.metrics import psnr
from segshield.utils.progress import progress
from segshield.utils.seed import seed_everything

__all__ = [
    "run_evaluation",
    "load_model",
    "WRAPPED_SUFFIXES",
    "quantize_8bit",
    "model_label",
    "dataset_label",
    "mask_to_rgb",
    "png_bytes",
]

log = logging.getLogger(__name__)


def _sub_seed(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def load_data(spec: str, config: EvalConfig, model: torch.nn.Module) -> Any:
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
    return x, y


@dataclass
class RunState:
    """What every (model, dataset) pair of one run shares."""

    config: EvalConfig
    store: ResultStore
    done: set[RowKey]
    device: torch.device
    defenses: dict[str, torch.nn.Module]
    attacks: list[tuple[str, bool, Any]]
    on_group: Callable[[int], None] | None

    def commit(self, rows: list[dict[str, Any]], examples: list) -> None:
        """Store one transaction of rows and mark them done."""
        self.store.add(rows, examples)
        self.done.update(tuple(r[c] for c in KEY_COLUMNS) for r in rows)
        if self.on_group is not None:
            self.on_group(len(rows))


@dataclass
class PairState:
    """One model on one dataset: names, the scorer and the targets of the samples."""

    model: torch.nn.Module
    mname: str
    dname: str
    ds: Any
    scorer: Any
    names: list[str]
    targets: torch.Tensor | None
    attacks: list[tuple[str, bool, Any]]
    clean_rows: bool
    cannot_run: frozenset = frozenset()  # (attack, adaptive, defence) an attack cannot run

    def key(self, attack: str, adaptive: bool, defense: str, sample: str) -> RowKey:
        return (self.mname, self.dname, attack, int(adaptive), defense, sample)


def run_evaluation(
    config: EvalConfig,
    output: str | Path,
    *,
    models: Mapping[str, torch.nn.Module] | None = None,
    datasets: Mapping[str, Any] | None = None,
    on_group: Callable[[int], None] | None = None,
) -> ResultStore:
    """Run (or resume) an evaluation and store one row per sample x model x attack x defence.

    docs/ALGORITHMS.md §5 protocol; FR paper pipeline (Liu et al., MICCAI 2020) with 8-bit
    PNG round trip of the adversarial images unless ``config.png_roundtrip`` is false.
    Segmentation models are scored by :class:`SegmentationScorer`, the classifiers of
    ``config.classifiers`` by :class:`ClassificationScorer` (the ``classifier`` table).

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
    run = open_run(config, output, on_group)
    datasets = datasets or {}
    model_info: dict[str, Any] = {}
    skipped: dict[str, list[str]] = {}
    for i, mspec in enumerate(config.models):
        model, mname, plan = prepare_model(run, mspec, models)
        model_info[mname] = getattr(model, "config", {})
        if plan[2]:
            skipped[mname] = plan[2]
        for dspec in model_datasets(config, i):
            ds = datasets[dspec] if dspec in datasets else load_data(dspec, config, model)
            pair = build_pair(run, model, mname, ds, dspec, plan[:2])
            _evaluate_pair(run, pair)
            add_worst_case(run, pair)
    for cspec in config.classifiers:
        _evaluate_classifier(run, cspec, datasets)
    run.store.update_manifest(models=model_info, skipped_attacks=skipped)
    return run.store


def open_run(config: EvalConfig, output: str | Path, on_group=None, device=None) -> RunState:
    """Open (or resume) the store of a run, note its defences and build its attacks."""
    device = torch.device(config.device if device is None else device)
    store = ResultStore(output)
    if store.start_run(config.to_dict(), config.digest(), config.seed):
        log.info("resuming %s: %d finished rows kept", output, len(store))
    defenses, attacks = grid_parts(config, device)
    store.update_manifest(
        defenses={s: d.spec() for s, d in defenses.items()},
        adaptive_attacks=list(config.adaptive),
        defense_gradients={s: getattr(d, "gradient", None) for s, d in defenses.items()},
    )
    return RunState(config, store, store.done_keys(), device, defenses, attacks, on_group)


def grid_parts(config: EvalConfig, device: torch.device):
    """``(defences by spec, [(attack spec, adaptive, attack)])`` of a run, built on ``device``."""
    from segshield.defenses import get_defense

    defenses = {spec: get_defense(spec).to(device).eval() for spec in config.defenses}
    return defenses, config.attack_list()  # the speed options applied (attacks.precision)


def prepare_model(run: RunState, mspec: str, models: Mapping[str, Any] | None = None):
    """``(model, label, attack plan)``: the model of a spec in eval mode, without gradients."""
    model = models[mspec] if models is not None and mspec in models else load_model(mspec)
    model = model.to(run.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    mname = model_label(mspec)
    return model, mname, attack_plan(run, model, mname)


def model_datasets(config: EvalConfig, i: int) -> list[str]:
    """The data specs model ``i`` is evaluated on (its own with ``pairing="zip"``)."""
    return [config.datasets[i]] if config.pairing == "zip" else list(config.datasets)


def add_worst_case(run: RunState, pair: PairState) -> None:
    """With ``config.worst_case``, commit the pair's worst-case rows not stored yet."""
    if not (run.config.worst_case and pair.attacks):
        return
    entrants = [(a, ad) for a, ad, _ in pair.attacks]
    rows = worst_case_rows(run.store.rows(), entrants, pair.mname, pair.dname, skip=pair.cannot_run)
    run.commit([r for r in rows if tuple(r[c] for c in KEY_COLUMNS) not in run.done], [])


def attack_plan(run: RunState, model: torch.nn.Module, mname: str):
    """``(attacks, clean_rows, skipped)`` of one model: a model without gradients skips all."""
    clean_rows = NO_ATTACK in run.config.attacks
    if getattr(model, "supports_gradients", True) or not run.attacks:
        return run.attacks, clean_rows, []
    skipped = [f"{a} (adaptive)" if adaptive else a for a, adaptive, _ in run.attacks]
    log.warning(
        "%s has no gradients (supports_gradients is False, e.g. ONNX): skipping the attack(s) %s; "
        "its clean and benign scores are stored under attack %r",
        mname,
        ", ".join(skipped),
        NO_ATTACK,
    )
    return [], True, skipped


def build_pair(
    run: RunState, model: torch.nn.Module, mname: str, ds: Any, dspec: str, plan
) -> PairState:
    """The segmentation pair: its scorer, sample names, (seeded) target masks and attacks."""
    from segshield.attacks import make_targets

    config = run.config
    ds = evaluated_items(ds, config, run.store, dataset_label(dspec))
    scorer = SegmentationScorer(dict(ds.regions), config.downstream, config.glaucoma_threshold)
    names = [str(ds[i]["name"]) for i in range(len(ds))]
    targets = None
    if config.target is not None:
        masks_all = torch.stack([torch.as_tensor(ds[i]["mask"]) for i in range(len(ds))]).long()
        targets = make_targets(config.target, masks_all, seed=config.seed)
        check_masks(targets, "target masks", like=masks_all)
    cannot = cannot_run(plan[0], run.defenses)
    return PairState(model, mname, dataset_label(dspec), ds, scorer, names, targets, *plan, cannot)


def _unfinished(run: RunState, pair: PairState, start: int, combos: list[tuple[str, bool, str]]):
    """Samples of the batch at ``start`` with any unfinished row (after a kill)."""
    stop = min(start + run.config.batch_size, len(pair.names))
    return [
        i
        for i in range(start, stop)
        if any(pair.key(*c, pair.names[i]) not in run.done for c in combos)
    ]


def pair_combos(run: RunState, pair: PairState) -> list[tuple[str, bool, str]]:
    """The ``(attack, adaptive, defence)`` row groups of a pair, ``none`` rows last."""
    combos = [(a, ad, d) for a, ad, _ in pair.attacks for d in run.defenses]
    combos = [c for c in combos if c not in pair.cannot_run]
    return combos + [(NO_ATTACK, False, d) for d in run.defenses if pair.clean_rows]


def _evaluate_pair(run: RunState, pair: PairState) -> None:
    """Every batch of a segmentation pair (:func:`evaluate_batch`)."""
    combos = pair_combos(run, pair)
    starts = list(range(0, len(pair.names), run.config.batch_size))
    for start in progress(starts, desc=f"{pair.mname} on {pair.dname}", unit="batch"):
        evaluate_batch(run, pair, start, combos)


def evaluate_batch(run: RunState, pair: PairState, start: int, combos: list) -> None:
    """The batch at ``start``: clean and benign once, then each attack group; commits rows.

    The executors' cells are these batches (:mod:`~segshield.evaluation.cells`).
    """
    idx = _unfinished(run, pair, start, combos)
    if not idx:
        return
    names = [pair.names[i] for i in idx]
    # seeded per batch (randomised defences), so a batch's rows do not depend on the ones before
    seed_everything(_sub_seed(run.config.seed, pair.mname, pair.dname, "clean", start))
    missing = {c for c in combos if any(pair.key(*c, s) not in run.done for s in names)}
    x, y = _batch(pair.ds, idx, run.device)
    check_images(x, f"{pair.dname} images", check_range=True)
    check_masks(y, f"{pair.dname} masks", like=x)
    tgt = None if pair.targets is None else pair.targets[idx].to(run.device)
    b = len(idx)
    clean_pred, seconds = timed(partial(pair.scorer.predict, pair.model, x), run.device)
    base: dict[str, list[float]] = {}
    put(base, "t_clean", [seconds / b] * b)
    clean_cols, clean = pair.scorer.columns("clean", clean_pred, y)
    base.update(clean_cols)
    needed = sorted({d for _, _, d in missing}, key=list(run.defenses).index)
    benign = {
        d: pair.scorer.benign(pair.model, run.defenses[d], x, y, clean, run.device) for d in needed
    }
    batch = {"idx": idx, "names": names, "x": x, "y": y, "start": start}
    batch.update(clean_pred=clean_pred, clean=clean, base=base, benign=benign)
    if pair.clean_rows:
        _clean_rows(run, pair, batch, missing)
    for aspec, adaptive, attack in pair.attacks:
        todo = [d for d in run.defenses if (aspec, adaptive, d) in missing]
        groups = [[d] for d in todo] if adaptive else [todo]
        target = tgt if getattr(attack, "allows_target", True) else None
        for group in groups if todo else []:
            _attack_group(run, pair, batch, (aspec, adaptive, attack), group, target)


def _row(key: RowKey, cols: dict[str, list[float]], j: int) -> dict[str, Any]:
    """The stored row of sample ``j`` of a batch: its key and its value of every column."""
    return {**dict(zip(KEY_COLUMNS, key, strict=True)), **{c: v[j] for c, v in cols.items()}}


def _clean_rows(run: RunState, pair: PairState, batch: dict, missing: set) -> None:
    """Rows of attack ``none`` on a batch: clean and benign scores of each missing defence."""
    rows = [
        _row(k, {**batch["base"], **batch["benign"][d]}, j)
        for d in run.defenses
        if (NO_ATTACK, False, d) in missing
        for j, sample in enumerate(batch["names"])
        if (k := pair.key(NO_ATTACK, False, d, sample)) not in run.done
    ]
    run.commit(rows, [])


def _attack_group(run: RunState, pair: PairState, batch: dict, attack_info, group, a_tgt) -> None:
    """One attack (through one defence when adaptive) on a batch; rows for ``group``."""
    from segshield.attacks import Defended

    aspec, adaptive, attack = attack_info
    config, model, x, y = run.config, pair.model, batch["x"], batch["y"]
    victim = model
    if adaptive:
        d = run.defenses[group[0]]
        eot = config.eot_samples if getattr(d, "randomized", False) else 1
        victim = Defended(model, d, eot_samples=eot).eval()
    seed_everything(_sub_seed(config.seed, pair.mname, pair.dname, aspec, adaptive, batch["start"]))
    result, adv, seconds = attack_batch(
        attack, victim, x, y, a_tgt, config.png_roundtrip, run.device
    )
    b = x.shape[0]
    acols: dict[str, list[float]] = {}
    put(acols, "t_attack", [seconds / b] * b)
    put(acols, "attack_steps", result.stats["steps"])
    put(acols, "attack_success", result.stats["success"].double())
    delta = (adv - x).flatten(1)
    put(acols, "l2", delta.double().norm(dim=1))
    put(acols, "linf", delta.abs().amax(dim=1))
    put(acols, "adv_psnr", psnr(adv, x))
    with torch.no_grad():
        att_pred = pair.scorer.predict(model, adv)
    acols.update(pair.scorer.columns("attacked", att_pred, y)[0])
    if a_tgt is not None:
        st = pair.scorer.scores(att_pred, a_tgt)
        put(acols, "attack_target_iou", st.iou)
        put(acols, "attack_target_dice", st.dice)
    rows: list[dict[str, Any]] = []
    examples: list[tuple[RowKey, str, bytes]] = []
    for dspec in group:
        rec_img, rec_pred, dcols = _recover(run, pair, batch, dspec, adv, a_tgt)
        cols = {**batch["base"], **acols, **dcols}
        for j, sample in enumerate(batch["names"]):
            k = pair.key(aspec, adaptive, dspec, sample)
            if k in run.done:
                continue
            rows.append(_row(k, cols, j))
            if batch["idx"][j] < config.examples:
                images = {"image": x[j], "adversarial": adv[j], "defended": rec_img[j]}
                masks = {"gt": y[j], "target": None if a_tgt is None else a_tgt[j]}
                masks.update(clean=batch["clean_pred"][j], attacked=att_pred[j])
                masks["recovered"] = rec_pred[j]
                examples += [(k, kind, png) for kind, png in example_tiles(images, masks)]
    run.commit(rows, examples)


def _recover(run: RunState, pair: PairState, batch: dict, dspec: str, adv, a_tgt):
    """The defence on the adversarial images: recovered images, masks and columns."""
    model, b = pair.model, adv.shape[0]
    dcols = dict(batch["benign"][dspec])
    (rec_img, rec_pred), seconds = timed(
        lambda: _defend_predict(run.defenses[dspec], model, pair.scorer, adv), run.device
    )
    put(dcols, "t_recover", [seconds / b] * b)
    dcols.update(
        pair.scorer.recovered(
            batch["x"], batch["y"], rec_img, rec_pred, batch["clean_pred"], batch["clean"], a_tgt
        )
    )
    return rec_img, rec_pred, dcols


def _defend_predict(defense, model, scorer, adv):
    rec_img = defense(adv)
    return rec_img, scorer.predict(model, rec_img)


def _evaluate_classifier(run: RunState, cspec: str, datasets: Mapping[str, Any]) -> None:
    """Classifier rows in the ``classifier`` table, resumable per (attack, batch)."""
    from segshield.data.labels import item_label
    from segshield.defenses import get_defense
    from segshield.models import load

    config = run.config
    done = run.store.done_keys("classifier")
    defs = [get_defense(d) for d in config.defenses]
    modes = (False, True) if config.classifier_adaptive else (False,)
    model = load(cspec, map_location=run.device, task="classify").eval()
    cname = model_label(cspec)
    for dspec in config.datasets:
        ds = datasets[dspec] if dspec in datasets else load_data(dspec, config, model)
        ds = evaluated_items(ds, config, run.store, dataset_label(dspec))
        task, dname, n = label_task(model, ds, None), dataset_label(dspec), len(ds)
        names = [str(ds[i]["name"]) for i in range(n)]
        starts = range(0, n, config.batch_size)
        jobs = [(a, ad, s) for ad in modes for a in config.classifier_attacks for s in starts]
        for aspec, adaptive, start in progress(jobs, desc=f"{cname} on {dname}"):
            keys = {
                i: [(cname, dname, aspec, int(adaptive), d, names[i]) for d in config.defenses]
                for i in range(start, min(start + config.batch_size, n))
            }
            idx = [i for i, ks in keys.items() if any(k not in done for k in ks)]
            if not idx:
                continue
            items = [ds[i] for i in idx]
            y = torch.tensor([item_label(it, task, config.glaucoma_threshold) for it in items])
            x = torch.stack([torch.as_tensor(it["image"], dtype=torch.float32) for it in items])
            seed = _sub_seed(config.seed, cname, dname, aspec, adaptive, start) % 2**31
            out = attack_classifier_batch(
                model,
                x.to(run.device),
                y.to(run.device),
                resolve_attacks([aspec]),
                defs,
                adaptive=adaptive,
                png_roundtrip=config.png_roundtrip,
                seed=seed,
            )
            rows = [
                row
                for _, j, res, preds in out
                for row in _classifier_rows(res, preds, y, [keys[i][j] for i in idx], done)
            ]
            run.store.add(rows, table="classifier")
            done.update(tuple(r[c] for c in KEY_COLUMNS) for r in rows)


def _classifier_rows(res, preds, y, keys: list[RowKey], done: set[RowKey]) -> list[dict]:
    """Rows of one (attack, defence) on a batch: label, accuracies and attack statistics."""
    cols: dict[str, list[float]] = {}
    put(cols, "label", y.double())
    for stage in ("clean", "benign", "attacked", "recovered"):
        cols.update(ClassificationScorer.columns(stage, preds[stage], y))
    put(cols, "attack_success", res.stats["success"].double())
    put(cols, "l2", res.stats["l2"])
    put(cols, "linf", res.stats["linf"])
    put(cols, "attack_steps", res.stats["steps"])
    return [_row(k, cols, b) for b, k in enumerate(keys) if k not in done]
