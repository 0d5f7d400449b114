"""``segshield evaluate``: defences against attacks, one row per sample (docs/ALGORITHMS.md §5).

Either ``--config EXP.yaml`` (or ``.json``) or flags; flags given beside a config file
replace its values. Results go to ``-o RESULTS`` (SQLite + manifest); re-running the
same command after an interruption resumes without recomputing finished rows.

``--model`` takes a checkpoint or a model file that ``segshield.models.wrap`` reads
(``.onnx``, e.g. a defended file from ``segshield export``, or TorchScript ``.ts``). An
ONNX model has no gradients: the attacks are skipped on it (one warning; the summary
says which) and its clean and benign scores are stored under attack ``none``;
``--attack none`` asks for those rows for every model.

``--worst-case`` adds, per sample and defence, the worst case over the attacks run
(adaptive ones included): rows of attack ``worst-case`` naming the winning attack in
``worst_attack``. ``--suite standard`` runs ASMA, PGD, APGD-CE, APGD-BMCE and CosPGD on the
bare model and DCT-PGD through each defence, at the L-inf budget ``--eps`` (default
8/255), and reports the worst case.

``--executor ray`` computes the grid's cells (one batch with every attack and defence)
as tasks on a Ray cluster (``segshield[ray]``; docs/CLUSTER.md); the results folder
stays with this process, the only one that writes it. ``--dry-run`` prints the grid
and its estimated device-hours and computes nothing.

``--attack``/``--adaptive`` (and the config file's lists) take sweeps:
``pgd:eps={1,2,4,8,16}/255`` is five attacks, each stored under its own spec; several
groups in one spec are zipped (``asma:tau={1,10}e-7,beta={1,10}e-6``). ``segshield report
RESULTS --curves`` shows the curves. ``--attack-precision bf16``, ``--channels-last`` and
``--compile`` make the attacks faster on a GPU (the scores stay float32; float32 is the
published algorithm and the default).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from segshield.choices import SUITES
from segshield.cli import _common as common
from segshield.cli import _executor
from segshield.cli._speed import add_attack_speed, check_attack_speed

__all__ = ["add_parser", "validate", "run", "config_from_args", "check_model_paths"]

log = logging.getLogger(__name__)

_LIST_FLAGS = {
    "model": "models",
    "data": "datasets",
    "attack": "attacks",
    "adaptive": "adaptive",
    "defense": "defenses",
    "classifier": "classifiers",
    "classifier_attack": "classifier_attacks",
}
_SCALAR_FLAGS = (
    "target",
    "size",
    "split",
    "n",
    "seed",
    "batch_size",
    "examples",
    "glaucoma_threshold",
    "device",
    "suite",
    "eps",
    "attack_precision",
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="Evaluate defences against attacks (results table + manifest, resumable)",
        description=__doc__,
    )
    p.add_argument("--config", help="experiment file (.yaml needs PyYAML, or .json)")
    common.add_model(
        p, "model checkpoint, or .onnx/.ts file (segshield.models.wrap; repeatable)", repeat=True
    )
    common.add_data(p, "data spec KIND[:PATH] (repeatable)", repeat=True)
    p.add_argument(
        "--attack",
        action="append",
        help="attack spec, e.g. asma:steps=200; a sweep pgd:eps={1,2,4}/255 (one attack per "
        "value); or none: clean and benign scores only (repeatable)",
    )
    p.add_argument(
        "--adaptive",
        action="append",
        metavar="ATTACK",
        help="attack spec (or sweep) run through each defence (BPDA/EOT; repeatable)",
    )
    p.add_argument(
        "--defense",
        action="append",
        help="defence spec (repeatable); none (no defence) is always added",
    )
    p.add_argument("--classifier", action="append", help="classifier checkpoint (repeatable)")
    p.add_argument("--classifier-attack", action="append", help="attack spec for the classifiers")
    p.add_argument("--target", help="target masks for targeted attacks (default other-gt)")
    p.add_argument("--untargeted", action="store_true", help="no target masks")
    p.add_argument(
        "--no-png-roundtrip",
        action="store_true",
        help="do not round adversarial images to 8 bits before the defence",
    )
    p.add_argument(
        "--worst-case",
        action="store_true",
        help="also store the worst case per sample over the attacks run (attack worst-case)",
    )
    p.add_argument(
        "--suite",
        choices=SUITES,
        help="run this attack suite (standard: asma, pgd, apgd ce/bmce, cospgd; dctpgd "
        "adaptive) at --eps and report the worst case; --attack/--adaptive add to it",
    )
    p.add_argument("--eps", help="L-inf budget of --suite, e.g. 4/255 (default 8/255)")
    add_attack_speed(p)
    common.add_size(p)
    common.add_split(p, None, shown="val")
    common.add_limit(p, "at most N samples per dataset")
    p.add_argument("--n", type=int, help="load_dataset(n=): phantom set size before splitting")
    common.add_seed(p, None, shown=0)
    common.add_batch_size(p, None, shown=8, help="samples per batch")
    p.add_argument("--examples", type=int, help="example panels kept per row group (default 2)")
    p.add_argument("--glaucoma-threshold", type=float, help="CDR threshold (default 0.6)")
    common.add_device(p, None, shown="cpu")
    common.add_output(p, "results folder (created or resumed)")
    p.add_argument("--report", help="also write the HTML report to this file")
    _executor.add_executor_arguments(p)
    return p


def config_from_args(args: argparse.Namespace):
    """Build the :class:`EvalConfig` from ``--config`` and the flags.

    Raises:
        ValueError, TypeError, FileNotFoundError: bad or missing settings.
    """
    from segshield.evaluation.config import EvalConfig, load_config

    overrides = {}
    for flag, name in _LIST_FLAGS.items():
        if getattr(args, flag):
            overrides[name] = list(getattr(args, flag))
    for name in _SCALAR_FLAGS:
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    limit, subset = common.limit_args(args)
    if limit is not None:
        overrides.update(limit=limit, subset=subset)
    if args.no_png_roundtrip:
        overrides["png_roundtrip"] = False
    for flag in ("worst_case", "channels_last", "compile"):
        if getattr(args, flag):
            overrides[flag] = True
    if args.untargeted:
        if args.target is not None:
            raise ValueError("--untargeted: cannot be combined with --target")
    if args.config:
        cfg = load_config(args.config, **overrides)
        if args.untargeted:
            cfg.target = None
        return cfg
    if args.untargeted:
        overrides["target"] = None
    if not overrides.get("models") and not overrides.get("classifiers"):
        raise ValueError("--model: expected at least one checkpoint (or --config FILE)")
    if not overrides.get("datasets"):
        raise ValueError("--data: expected at least one data spec KIND[:PATH] (or --config)")
    return EvalConfig.from_dict(overrides)


def check_model_paths(models: list[str], flag: str = "--model") -> None:
    """Check each checkpoint exists as given or as ``NAME.safetensors``.

    Raises:
        FileNotFoundError: naming the missing checkpoint (or model file).
    """
    from segshield.evaluation.harness import WRAPPED_SUFFIXES

    for m in models:
        p = Path(m)
        if p.suffix.lower() in WRAPPED_SUFFIXES and not p.is_file():
            raise FileNotFoundError(f"{flag}: {m}: no such model file; check the path")
        if not (p.is_file() or p.with_suffix(".safetensors").is_file()):
            raise FileNotFoundError(
                f"{flag}: {m}: no such checkpoint (expected {p.with_suffix('.safetensors')} "
                "and its .json); train one with `segshield train`"
            )


def _check_data_specs(specs: list[str]) -> None:
    """Each ``--data`` spec names a known kind and, for a folder layout, an existing folder."""
    from segshield.data import parse_spec

    for spec in specs:
        try:
            _, path = parse_spec(spec)
        except ValueError as exc:
            raise ValueError(f"--data: {exc}") from None
        if path is not None and not path.exists():
            raise FileNotFoundError(f"--data: {spec}: no such folder {path}; check the path")


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any work, then lock the results folder.

    The lock (:func:`segshield.evaluation.lock.lock_folder`) is kept on ``args`` and held
    until :func:`run` ends, so no other process writes the folder in between.

    Raises:
        ValueError: bad settings, unknown data kinds or attack/defence specs, a checkpoint
            whose weights do not fit its JSON, an unusable device, an output that cannot
            be written, or a results folder that holds rows of a different run.
        FolderBusyError: another process writes to the results folder.
        FileNotFoundError: missing config, checkpoint or data folder.
    """
    from segshield.attacks import get_attack
    from segshield.defenses import get_defense
    from segshield.evaluation.config import NO_ATTACK
    from segshield.evaluation.harness import WRAPPED_SUFFIXES, load_model
    from segshield.evaluation.lock import lock_folder
    from segshield.evaluation.store import ResultStore
    from segshield.evaluation.suites import check_suite
    from segshield.models.checkpoint import check_checkpoint

    cfg = config_from_args(args)
    check_model_paths(cfg.models)
    _check_data_specs(cfg.datasets)
    check_model_paths(cfg.classifiers, "--classifier")
    for flag, specs, task in (
        ("--model", cfg.models, "segment"),
        ("--classifier", cfg.classifiers, "classify"),
    ):
        for spec in specs:
            wrapped = task == "segment" and Path(spec).suffix.lower() in WRAPPED_SUFFIXES
            try:
                load_model(spec) if wrapped else check_checkpoint(spec, task=task)
            except ValueError as exc:
                raise ValueError(f"{flag}: {exc}") from None
    if cfg.suite is not None:
        check_suite(cfg.suite, cfg.eps)
    attacks = [a for a in cfg.attacks if a != NO_ATTACK]
    for spec in [*attacks, *cfg.adaptive, *cfg.classifier_attacks]:
        get_attack(spec)
    for spec in cfg.defenses:
        get_defense(spec)
    here = _executor.check_ray_device(args, cfg.device, cfg.classifiers)
    if here:
        cfg.device = str(common.device_arg(cfg.device))  # "auto" -> the device it names here
    # on Ray the workers resolve the device: the speed settings are checked alone here
    speed_device = cfg.device if here else None
    check_attack_speed(cfg.attack_precision, cfg.channels_last, cfg.compile, speed_device)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output: {out} is a file; expected a results folder")
    if args.report is not None:
        common.check_writable_folder(Path(args.report).parent, "--report")
    if args.dry_run:  # nothing is written: no folder, no lock
        args._config = cfg
        return
    common.check_writable_folder(out, "-o")
    args._lock = lock_folder(out)
    if (out / "manifest.json").is_file():
        with ResultStore(out) as store:
            store.check_config(cfg.to_dict(), cfg.digest())
    args._config = cfg


def run(args: argparse.Namespace) -> int:
    """Run or resume the evaluation, print the summary table; 0 on success, 1 if cells failed."""
    from segshield.evaluation.executor import get_executor
    from segshield.evaluation.report import render_report
    from segshield.evaluation.summary import format_summary, run_notes, summarize

    cfg = args._config if hasattr(args, "_config") else config_from_args(args)
    settings = getattr(args, "_executor", None) or _executor.executor_settings(args)
    if args.dry_run:
        from segshield.evaluation.estimate import dry_run

        print(dry_run(cfg, args.output, throughput=args.throughput)[0])
        return 0
    try:
        outcome = get_executor(settings).run(cfg, args.output)
        store = outcome.store
        try:
            print(format_summary(summarize(store.rows()), "md"))
            for note in run_notes(store.manifest() or {}):
                print(f"Note: {note}")
            if args.report:
                path = render_report(store, args.report)
                log.info("report written to %s", path)
        finally:
            store.close()
    finally:
        if hasattr(args, "_lock"):
            args._lock.release()
    log.info("results in %s", args.output)
    failed = [f"{cell} ({error})" for cell, error in outcome.failed]
    return common.exit_code(log, failed, "cell(s)", sep="; ")
