"""Tune the FR table on ISIC 2017 with images the model never saw (see the README).

ISIC 2017 here has 2000 training and 150 validation images. Benign Dice losses of FR
tables differ by about 0.001 on ISIC, so the search needs more unseen images than half
of the validation split, and images the model was trained on are no substitute (the
model is more confident on them and their benign losses are lower). This script:

1. links the first ``--n-model`` training images (sorted by name) into
   ``WORKDIR/isic_model`` and the rest into ``WORKDIR/isic_unseen`` (symbolic links in
   the official folder layout; the validation folders are linked into both);
2. trains the U-Net of ``bench_training.py`` (``--epochs``, default 24, bf16,
   channels-last) on the first part;
3. runs ``segshield tune`` with (the first ``--limit``) unseen training images as the
   validation split and the 150 official validation images as the held-out split, with
   ``--max-benign-loss paper``, and with ``--bound`` too when given (reusing the first
   run's cache); ``--heldout-all`` also scores every searched table on the held-out
   split, to see whether any beats the paper's table there (``--no-heldout-all`` skips
   that); ``--space rgb,ycbcr`` also searches FR on luma and chroma, and ``--jpeg``
   names the JPEG qualities reported beside it on the same held-out images;
4. with ``--eval-limit N``, runs ``segshield evaluate`` with the paper's table, the best
   table of each colour space and every JPEG quality: the adaptive ``--eval-adaptive``
   (default PGD 8/255 through each defence, BPDA) on N validation images into
   ``WORKDIR/isic_eval``, and, unless ``--eval-attack`` is ``none``, that attack (e.g. ASMA
   with the paper's settings) on ``--eval-attack-limit`` of them into
   ``WORKDIR/isic_eval_attack`` (each a seeded random subset; results store and summary).

Each command is logged; ``WORKDIR/isic_paper.json`` (and ``isic_bound.json``) hold the
results. Skips (exit 0 with a message) when the data set is absent.

Usage::

    SEGSHIELD_SHARED_DATA=../shared/data python benchmarks/tune_isic.py --workdir runs/isic
    SEGSHIELD_SHARED_DATA=../shared/data python benchmarks/tune_isic.py --workdir runs/isic \
        --space rgb,ycbcr --jpeg 30,40,50,60,70,80,90 --bound 0.01 --eval-limit 150 \
        --eval-attack "asma:steps=1001,tau=1e-7,beta=1e-6" --eval-attack-limit 16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("tune_isic")
ATTACK = "asma:steps=100,tau=1e-5,beta=1e-4"
ADAPTIVE = "pgd:eps=8/255,steps=10"
TRAIN = ["--lr", "2e-3", "--precision", "bf16", "--channels-last"]


def link_split(root: Path, dest: Path, names: list[Path]) -> None:
    """``dest`` in the ISIC layout: ``names`` as training images, the official val set."""
    images = dest / "ISIC-2017_Training_Data"
    masks = dest / "ISIC-2017_Training_Part1_GroundTruth"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for p in names:
        mask = root / masks.name / f"{p.stem}_segmentation.png"
        if not mask.is_file():
            raise FileNotFoundError(f"{mask}: no mask for {p.name}")
        for src, folder in ((p, images), (mask, masks)):
            if not (folder / src.name).exists():
                (folder / src.name).symlink_to(src.resolve())
    for name in ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"):
        if not (dest / name).exists():
            (dest / name).symlink_to((root / name).resolve())


def run(cmd: list[str], log_file: Path) -> None:
    log.info("%s > %s", " ".join(cmd), log_file)
    with open(log_file, "w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)


def run_tune(cmd: list[str], log_file: Path) -> None:
    """``segshield tune``: exit 1 (no table met the bound; the best one is written) is a
    result, not a failure."""
    log.info("%s > %s", " ".join(cmd), log_file)
    with open(log_file, "w") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code not in (0, 1):
        raise subprocess.CalledProcessError(code, cmd)


def evaluate(cli: list[str], work: Path, model: Path, tuned: Path, args) -> None:
    """``segshield evaluate`` of the paper's, the tuned and the JPEG defences (held out).

    Two runs: the adaptive attack through each defence on ``--eval-limit`` (seeded random)
    validation images (``WORKDIR/isic_eval``), and, unless ``--eval-attack`` is
    ``none``, the non-adaptive attack on ``--eval-attack-limit`` of them (seeded random)
    (``WORKDIR/isic_eval_attack``; ASMA with the paper's settings is 10x the cost of
    the quick one, whose held-out scores the tuner reports already).
    """
    from segshield.defenses.tables import PAPER_SPEC

    result = json.loads(tuned.read_text())
    # the best table of each colour space searched (the overall best is one of them)
    per_space = list(result["config"].get("tuned_per_space", {}).values())
    specs = [PAPER_SPEC, *(per_space or [f"fr:file={tuned}"])]
    specs += [f"jpeg:q={q}" for q in args.jpeg.split(",") if q]
    cmd = [*cli, "evaluate", "--model", str(model), "--data", f"isic:{work / 'isic_model'}"]
    cmd += ["--split", "val", "--batch-size", "16"]
    for spec in specs:
        cmd += ["--defense", spec]
    runs = [("isic_eval", args.eval_limit, ["--attack", "none", "--adaptive", args.eval_adaptive])]
    if args.eval_attack != "none":
        limit = args.eval_attack_limit or args.eval_limit
        runs.append(("isic_eval_attack", limit, ["--attack", args.eval_attack]))
    for name, limit, attack in runs:
        run([*cmd, "--limit", str(limit), *attack, "-o", str(work / name)], work / f"{name}.log")
        log.info("result: %s", work / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("Usage::")[0])
    shared = os.environ.get("SEGSHIELD_SHARED_DATA", "")
    parser.add_argument("--root", default=str(Path(shared) / "isic2017") if shared else "")
    parser.add_argument("--workdir", required=True, help="folder for links, model, results")
    parser.add_argument("--n-model", type=int, default=1600, help="training images (1600)")
    parser.add_argument("--budget", type=int, default=120, help="tables scored (120)")
    parser.add_argument("--limit", type=int, default=250, help="unseen images searched (250)")
    parser.add_argument("--bound", default=None, help="a second --max-benign-loss, e.g. 0.01")
    parser.add_argument("--epochs", type=int, default=24, help="training epochs (24)")
    parser.add_argument("--attack", default=ATTACK, help=f"tuning attack ({ATTACK})")
    parser.add_argument("--space", default="rgb", help="colour spaces searched (rgb)")
    parser.add_argument("--jpeg", default="50,75,90", help="JPEG qualities (50,75,90)")
    parser.add_argument("--no-heldout-all", action="store_true", help="skip --heldout-all")
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluate: images (0: skip)")
    parser.add_argument("--eval-attack", default="none", help="evaluate: attack (none)")
    parser.add_argument(
        "--eval-attack-limit", type=int, default=0, help="evaluate: images attacked (--eval-limit)"
    )
    parser.add_argument("--eval-adaptive", default=ADAPTIVE, help=f"evaluate ({ADAPTIVE})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.root)
    train_dir = root / "ISIC-2017_Training_Data"
    if not args.root or not train_dir.is_dir():
        log.info("skipped: no ISIC 2017 at %r (set SEGSHIELD_SHARED_DATA or --root)", args.root)
        return 0
    names = sorted(p for p in train_dir.glob("*.jpg") if "superpixels" not in p.name)
    if not 0 < args.n_model < len(names):
        parser.error(f"--n-model: expected 1..{len(names) - 1}, got {args.n_model}")
    work = Path(args.workdir)
    link_split(root, work / "isic_model", names[: args.n_model])
    link_split(root, work / "isic_unseen", names[args.n_model :])
    cli = [sys.executable, "-m", "segshield.cli.main"]
    model = work / "model"
    if not model.with_suffix(".safetensors").is_file():
        train = ["train", "--data", f"isic:{work / 'isic_model'}", "--model", "unet"]
        train += ["--size", "128", "--epochs", str(args.epochs), "-o", str(model), *TRAIN]
        run([*cli, *train], work / "train.log")
    tune = ["tune", "--model", str(model), "--data", f"isic:{work / 'isic_unseen'}"]
    tune += ["--attack", args.attack, "--val-split", "train", "--heldout-split", "val"]
    tune += ["--limit", str(args.limit), "--batch-size", "16", "--space", args.space]
    tune += ["--budget", str(args.budget), "--seed", "0", "--resume", "--jpeg", args.jpeg]
    tune += [] if args.no_heldout_all else ["--heldout-all"]
    first = work / "isic_paper.json"
    paper = ["--max-benign-loss", "paper", "-o", str(first)]
    run_tune([*cli, *tune, *paper], work / "isic_paper.log")
    log.info("result: %s", first)
    if args.eval_limit:
        evaluate(cli, work, model, first, args)
    if args.bound is not None:
        for suffix in ("cache.jsonl", "cache.val-adv.safetensors", "cache.heldout-adv.safetensors"):
            src, dst = work / f"isic_paper.{suffix}", work / f"isic_bound.{suffix}"
            if not dst.exists():
                shutil.copyfile(src, dst)
        second = work / "isic_bound.json"
        bound = ["--max-benign-loss", args.bound, "-o", str(second)]
        run_tune([*cli, *tune, *bound], work / "isic_bound.log")
        log.info("result: %s", second)
    return 0


if __name__ == "__main__":
    sys.exit(main())
