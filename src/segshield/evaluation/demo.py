"""The demo and the paper's protocol: train (or reuse) a model, attack, defend, report.

``run_demo`` is the README's main job (``make demo``): phantom dermoscopy and fundus
sets (:data:`DEMO_DATASETS`; the fundus set is the disc-centred region of interest that
optic disc and cup segmentation works on), a small model per set trained once and
cached (keyed by a hash of its training settings), ASMA (Ozbulak et al., MICCAI 2019)
plus an adaptive BPDA attack, and the FR paper's table (Liu et al., MICCAI 2020)
against JPEG q in {50, 75, 90}, Feature Distillation, bit-depth reduction, median
filtering and no defence.

``run_reproduce`` applies the same protocol to a real data set (ISIC 2017, ORIGA or
the PaddleSeg optic-disc set): train on the training split, attack the validation
split with ASMA towards other images' ground-truth masks, defend, report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segshield._checks import check_choice, check_number
from segshield.defenses.tables import PAPER_SPEC
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.executor import LocalExecutor
from segshield.evaluation.report import render_report
from segshield.evaluation.summary import summarize

__all__ = [
    "DEMO_DATASETS",
    "DEMO_DEFENSES",
    "REPRODUCE_DATASETS",
    "DemoSettings",
    "default_cache_dir",
    "cached_model",
    "run_demo",
    "run_reproduce",
]

log = logging.getLogger(__name__)

#: FR with the paper's demo table, then the baselines it is compared with, then none.
DEMO_DEFENSES = (
    PAPER_SPEC,
    "jpeg:q=50",
    "jpeg:q=75",
    "jpeg:q=90",
    "fd",
    "bitdepth:bits=4",
    "median:k=3",
    "none",
)
#: The demo's data sets. The fundus set is the disc-centred crop (``phantom-fundus-roi``):
#: in the whole 64x64 photograph the disc is about 12 pixels tall, too few to resolve the
#: vertical cup-to-disc ratio, and another eye's disc (the ``other-gt`` target) often
#: lies on the other side of the image, where ASMA, whose step grows with the IoU with
#: the target, does not reach it.
DEMO_DATASETS = ("phantom-derm", "phantom-fundus-roi")
#: Training epochs of the demo's models per data set (``DemoSettings(epochs=None)``); other
#: data sets get :data:`DEFAULT_EPOCHS`. The fundus model's vertical cup-to-disc ratio needs
#: the longer training: its clean CDR error on the 8 evaluated images was 0.059 after 15
#: epochs and is 0.040 after 30 (0.074 and 0.048 on all 30 validation images; 2 threads).
DEMO_EPOCHS = {"phantom-derm": 15, "phantom-fundus-roi": 30}
DEFAULT_EPOCHS = 15
#: ``segshield reproduce --dataset`` names (:data:`segshield.choices.REPRODUCE_DATASETS`)
#: and their data kinds.
REPRODUCE_DATASETS = {"isic2017": "isic", "origa": "origa", "paddleseg": "paddleseg"}


#: Integer settings of :class:`DemoSettings` and their lowest values (checked in this order).
_LOWEST = {
    "size": 16,
    "width": 1,
    "epochs": 1,
    "n_train": 4,
    "n_eval": 1,
    "batch_size": 1,
    "seed": 0,
}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo and of ``reproduce`` (chosen to fit 5 CPU minutes for the demo).

    Args:
        size: image side in pixels, >= 16. Default 64.
        model: architecture for ``segshield.models.build_model``. Default ``"unet"``.
        width: model width, >= 1. Default 16.
        epochs: training epochs, >= 1, or ``None`` for the demo's per data set
            (:data:`DEMO_EPOCHS`: 15 dermoscopy, 30 fundus). Default ``None``.
        n_train: ``load_dataset(n=)`` for training and evaluation: phantoms generated
            per set before the train/val split; real data: the first ``n`` images of
            each split. ``None``: the loader's default (200 phantoms; every image).
        n_eval: evaluated validation samples per set, >= 1. Default 8.
        batch_size: evaluation batch size, >= 1. Default 4.
        asma: ASMA spec. ``tau = 1e-7`` (the paper's default, tuned for models on the
            0..255 / normalised scale) barely moves a ``[0, 1]`` model in a few hundred
            steps, so the demo uses a larger ``tau``/``beta``; success is reported as
            measured. Default ``"asma:steps=200,tau=1e-05,beta=0.0001"``.
        adaptive: attack run through each defence (BPDA for the non-differentiable
            ones). Default a targeted 10-step L-inf PGD, eps 8/255.
        defenses: defence specs. Default :data:`DEMO_DEFENSES`.
        seed: seed of data, training, targets and attacks. Default 0.

    Raises:
        ValueError, TypeError: a setting out of range or of the wrong type.

    Example:
        >>> DemoSettings(n_eval=4).n_eval
        4
    """

    size: int = 64
    model: str = "unet"
    width: int = 16
    epochs: int | None = None
    n_train: int | None = None
    n_eval: int = 8
    batch_size: int = 4
    asma: str = "asma:steps=200,tau=1e-05,beta=0.0001"
    adaptive: str = "pgd:eps=0.0314,alpha=0.0078,steps=10"
    defenses: tuple[str, ...] = DEMO_DEFENSES
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in _LOWEST.items():
            value = getattr(self, name)
            if value is not None or name not in ("n_train", "epochs"):
                check_number(name, value, low=low, integer=True)

    def epochs_for(self, data_spec: str) -> int:
        """Training epochs for ``data_spec``: ``epochs``, else :data:`DEMO_EPOCHS`.

        Example:
            >>> DemoSettings().epochs_for("phantom-fundus-roi")
            30
            >>> DemoSettings(epochs=2).epochs_for("phantom-fundus-roi")
            2
        """
        if self.epochs is not None:
            return self.epochs
        return DEMO_EPOCHS.get(data_spec, DEFAULT_EPOCHS)


def default_cache_dir() -> Path:
    """``$SEGSHIELD_CACHE``, else ``$XDG_CACHE_HOME/segshield``, else ``~/.cache/segshield``."""
    env = os.environ.get("SEGSHIELD_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segshield"


def cached_model(
    data_spec: str,
    settings: DemoSettings,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    init: str | Path | None = None,
) -> Path:
    """Train a model on ``data_spec`` once; later calls with the same settings reuse it.

    The checkpoint is ``CACHE/models/KIND-MODEL-SIZE-HASH.safetensors`` (+ ``.json``),
    HASH being a SHA-256 of the data spec, the training settings and the segshield
    version. Training uses ``segshield.training.train_segmentation`` on the ``train``
    split and keeps the best epoch on the ``val`` split.

    Args:
        data_spec: ``KIND[:PATH]`` for ``segshield.data.load_dataset``.
        settings: sizes, architecture, epochs and seed (:class:`DemoSettings`).
        cache_dir: cache folder. Default :func:`default_cache_dir`.
        device: where to train. Default ``"cpu"``.
        init: a ``.safetensors`` file of encoder weights loaded before training
            (:func:`segshield.models.init.load_encoder`; its SHA-256 joins the cache key),
            or ``None`` to train from scratch. The checkpoint's ``config["encoder_init"]``
            records which. Default ``None``.

    Returns:
        The checkpoint path (``.safetensors``).

    Raises:
        FileNotFoundError, ValueError: from the data loader or the trainer.

    Example:
        >>> cached_model("phantom-derm", DemoSettings())  # doctest: +SKIP
    """
    from segshield import __version__
    from segshield.data import load_dataset
    from segshield.models import build_model
    from segshield.models.init import file_digest, load_encoder
    from segshield.training import train_segmentation
    from segshield.utils.seed import seed_everything

    keyed = {
        "data": data_spec,
        "size": settings.size,
        "model": settings.model,
        "width": settings.width,
        "epochs": settings.epochs_for(data_spec),
        "n_train": settings.n_train,
        "seed": settings.seed,
        "version": __version__,
    }
    if init is not None:
        keyed["init"] = file_digest(init)
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]
    kind = data_spec.partition(":")[0]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = folder / "models" / f"{kind}-{settings.model}-{settings.size}-{digest}"
    ckpt = stem.with_suffix(".safetensors")
    if ckpt.is_file() and stem.with_suffix(".json").is_file():
        log.info("reusing cached model %s", ckpt)
        return ckpt
    stem.parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {"size": settings.size, "seed": settings.seed}
    if settings.n_train is not None:
        kw["n"] = settings.n_train
    train = load_dataset(data_spec, split="train", **kw)
    val = load_dataset(data_spec, split="val", **kw)
    k = 1 if train.num_classes == 2 else train.num_classes
    seed_everything(settings.seed)  # the initial weights too, so the cache key is honest
    model = build_model(
        settings.model,
        num_classes=k,
        class_names=list(train.class_names),
        width=settings.width,
    )
    model.config["encoder_init"] = "scratch" if init is None else load_encoder(model, init)
    log.info(
        "training %s on %s (%d images, %d epochs)",
        settings.model,
        kind,
        len(train),
        keyed["epochs"],
    )
    t0 = time.perf_counter()
    result = train_segmentation(
        model,
        train,
        val,
        epochs=keyed["epochs"],
        out=stem,
        regions=dict(train.regions),
        seed=settings.seed,
        device=device,
        trained_on=data_spec,
    )
    log.info(
        "trained in %.0f s; best validation scores %s",
        time.perf_counter() - t0,
        {k: round(v, 3) for k, v in result["best_scores"].items() if isinstance(v, float)},
    )
    return ckpt


def eval_config(
    models: list[Path], datasets: list[str], settings: DemoSettings, device: str
) -> EvalConfig:
    """The evaluation settings of the demo and ``reproduce`` (each model on its data)."""
    return EvalConfig(
        models=[str(m) for m in models],
        datasets=list(datasets),
        attacks=[settings.asma],
        adaptive=[settings.adaptive],
        defenses=list(settings.defenses),
        target="other-gt",
        size=settings.size,
        split="val",
        limit=settings.n_eval,
        n=settings.n_train,
        seed=settings.seed,
        batch_size=settings.batch_size,
        examples=1,
        device=device,
        pairing="zip",
    )


def _evaluate(
    models: list[Path],
    datasets: list[str],
    settings: DemoSettings,
    out_dir: Path,
    title: str,
    device: str,
    executor: Any = None,
) -> tuple[list[dict[str, Any]], Path]:
    cfg = eval_config(models, datasets, settings, device)
    outcome = (executor or LocalExecutor()).run(cfg, out_dir / "results")
    store = outcome.store
    try:
        summary = summarize(store.rows())
        report = render_report(store, out_dir / "report.html", title=title)
    finally:
        store.close()
    outcome.raise_failed(report)
    return summary, report


def run_demo(
    out_dir: str | Path = "demo_out",
    settings: DemoSettings | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
) -> tuple[list[dict[str, Any]], Path]:
    """The README's main job: phantoms, cached small models, attacks, defences, report.

    Args:
        out_dir: folder for ``results/`` (resumable) and ``report.html``. Default
            ``"demo_out"``.
        settings: sizes and specs. Default :class:`DemoSettings` ``()``.
        cache_dir: model cache. Default :func:`default_cache_dir`.
        device: ``"cpu"`` or ``"cuda"``. Default ``"cpu"``.

    Returns:
        ``(summary rows, report path)``.

    Raises:
        ValueError: ``out_dir/results`` holds a run with other settings.

    Example:
        >>> summary, report = run_demo("demo_out")  # doctest: +SKIP
    """
    settings = settings or DemoSettings()
    out = Path(out_dir)
    datasets = list(DEMO_DATASETS)
    models = [cached_model(d, settings, cache_dir, device) for d in datasets]
    return _evaluate(models, datasets, settings, out, "segshield demo (phantoms)", device)


def run_reproduce(
    dataset: str,
    root: str | Path,
    out_dir: str | Path,
    settings: DemoSettings,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    executor: Any = None,
) -> tuple[list[dict[str, Any]], Path]:
    """The FR paper's protocol on a real data set: train, ASMA to other masks, defend.

    Liu et al., MICCAI 2020: ASMA with another image's ground truth as target, FR and
    the baselines, recovered scores; an adaptive attack is added (docs/ALGORITHMS.md §4).

    Args:
        dataset: one of :data:`REPRODUCE_DATASETS` (``isic2017``, ``origa``,
            ``paddleseg``).
        root: the data set's folder (layouts of docs/ALGORITHMS.md §6).
        out_dir: folder for ``results/`` and ``report.html``.
        settings: sizes and specs (:class:`DemoSettings`; ``n_eval`` caps the
            evaluated validation images, ``n_train`` the training images).
        cache_dir: model cache. Default :func:`default_cache_dir`.
        device: ``"cpu"`` or ``"cuda"``.
        executor: where the evaluation's cells run
            (:func:`~segshield.evaluation.executor.get_executor`); ``None``: here.

    Returns:
        ``(summary rows, report path)``.

    Raises:
        ValueError: unknown ``dataset``, or cells that failed for good (after the
            report of the others is written).
        FileNotFoundError: ``root`` missing.

    Example:
        >>> run_reproduce(  # doctest: +SKIP
        ...     "isic2017", "data/isic2017", "out", DemoSettings(size=128))
    """
    check_choice("dataset", dataset, list(REPRODUCE_DATASETS))
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: {root}: no such folder; pass the {dataset} folder")
    spec = f"{REPRODUCE_DATASETS[dataset]}:{root}"
    model = cached_model(spec, settings, cache_dir, device)
    title = f"segshield reproduce: {dataset}"
    return _evaluate([model], [spec], settings, Path(out_dir), title, device, executor)
