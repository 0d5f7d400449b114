"""Checkpoints: ``X.safetensors`` (weights) + ``X.json`` (config), written atomically.

One format for every task: the config's ``"task"`` (``"classify"`` for classifiers;
absent, as in every checkpoint written before it existed, for segmentation) picks the
registry the network is rebuilt from. Loading never unpickles: weights come from
safetensors, settings from JSON, and the network is rebuilt from the registry by
``config["architecture"]`` and ``config["arch_kwargs"]``. ``.pt``/``.pth``/``.pkl``
files are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from segshield.models.base import NormalizedModel
from segshield.models.registry import SEGMENT, TASKS, build_model, list_models
from segshield.utils.imageio import atomic_write_bytes

__all__ = [
    "save",
    "load",
    "restore",
    "checkpoint_paths",
    "stem_paths",
    "read_config",
    "read_json",
    "read_safetensors",
    "check_checkpoint",
    "weights_mismatch",
    "FORMAT",
    "FORMAT_VERSION",
]

FORMAT = "segshield-model"
FORMAT_VERSION = 1
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")
#: task -> what a checkpoint of it is called in messages
_KIND = {"segment": "segmentation", "classify": "classifier"}

# key -> (expected types, description for the error message)
_REQUIRED: dict[str, tuple[tuple[type, ...], str]] = {
    "architecture": ((str,), "a registry name such as 'unet'"),
    "arch_kwargs": ((dict,), "an object of architecture settings"),
    "num_classes": ((int,), "an integer >= 1"),
    "in_channels": ((int,), "an integer >= 1"),
    "mean": ((list,), "a list of per-channel means"),
    "std": ((list,), "a list of per-channel stds"),
    "class_names": ((list,), "a list of class names"),
}


def stem_paths(path: str | Path, weights: str, config: str) -> tuple[Path, Path]:
    """``(X + weights, X + config)`` for the stem ``X`` of ``X``, ``X.safetensors`` or ``X.json``.

    Example:
        >>> [p.name for p in stem_paths("runs/m.json", ".state.safetensors", ".state.json")]
        ['m.state.safetensors', 'm.state.json']
    """
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + weights), p.with_name(p.name + config)


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(X.safetensors, X.json)`` for ``X``, ``X.safetensors`` or ``X.json``.

    Example:
        >>> [p.name for p in checkpoint_paths("runs/model.json")]
        ['model.safetensors', 'model.json']
    """
    return stem_paths(path, ".safetensors", ".json")


def save(model: NormalizedModel, path: str | Path) -> tuple[Path, Path]:
    """Write ``model`` as ``PATH.safetensors`` + ``PATH.json``, each atomically.

    Args:
        model: a segmentation model or classifier built by :func:`build_model` (its
            ``config["architecture"]`` must be a registry name of its task).
        path: the stem ``X``, or ``X.safetensors`` / ``X.json``.

    Returns:
        The two paths written.

    Raises:
        TypeError: ``model`` is not a segshield model.
        ValueError: the model's architecture is not in the registry (a wrapped user,
            TorchScript or ONNX model: keep its own file instead).

    Example:
        >>> from segshield.models import build_model
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> [p.name for p in save(build_model("small", width=4), os.path.join(d, "m"))]
        ['m.safetensors', 'm.json']
    """
    from safetensors.torch import save as st_save

    if not isinstance(model, NormalizedModel):
        raise TypeError(
            f"model: expected a segshield SegmentationModel, got {type(model).__name__}"
        )
    task = model.config.get("task", SEGMENT)
    arch = model.config.get("architecture")
    if arch not in list_models(task):
        raise ValueError(
            f"model: cannot save architecture {arch!r}: only registry models "
            f"({', '.join(list_models(task))}) can be rebuilt from a checkpoint; keep the "
            "original TorchScript/ONNX file or save your own module's weights"
        )
    weights_path, json_path = checkpoint_paths(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    config = dict(model.config)
    config["format"] = FORMAT
    config["format_version"] = FORMAT_VERSION
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=True)
    meta = {"format": FORMAT} if "task" not in config else {"format": FORMAT, "task": task}
    atomic_write_bytes(weights_path, st_save(state, metadata=meta))
    atomic_write_bytes(json_path, (text + "\n").encode("utf-8"))
    return weights_path, json_path


def read_json(path: Path) -> Any:
    """Parse a JSON file.

    Raises:
        ValueError: not valid JSON (the message names the file).
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); the file is damaged") from exc


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file's tensors (CPU); never unpickles.

    Raises:
        ValueError: not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        return st_load(path.read_bytes())
    except SafetensorError as exc:
        raise ValueError(
            f"{path}: not a safetensors file ({exc}); segshield never loads pickles"
        ) from exc


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and validate the JSON config of a checkpoint.

    Raises:
        FileNotFoundError: the JSON file is missing.
        ValueError: not JSON, not a segshield checkpoint, or a required key is
            missing or has the wrong type (the message names the key).
    """
    _refuse_pickle(Path(path))
    _, json_path = checkpoint_paths(path)
    if not json_path.is_file():
        raise FileNotFoundError(
            f"{json_path}: checkpoint config not found; a segshield checkpoint is X.json + "
            "X.safetensors (written by segshield train or segshield.models.save)"
        )
    config = read_json(json_path)
    if not isinstance(config, dict):
        raise ValueError(f"{json_path}: expected a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        raise ValueError(
            f"{json_path}: expected 'format': {FORMAT!r}, got {config.get('format')!r}; "
            "this is not a segshield model checkpoint"
        )
    for key, (types, what) in _REQUIRED.items():
        if key not in config:
            raise ValueError(f"{json_path}: missing key {key!r} (expected {what})")
        value = config[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(
                f"{json_path}: key {key!r} should be {what}, got {type(value).__name__} {value!r}"
            )
    return config


def load(
    path: str | Path, map_location: str | torch.device = "cpu", *, task: str | None = None
) -> torch.nn.Module:
    """Load a checkpoint written by :func:`save`, in eval mode; never unpickles.

    One call loads either kind: the config's ``"task"`` (absent: segmentation) picks the
    registry (:func:`segshield.models.build_model`) that rebuilds the network.

    Args:
        path: ``X``, ``X.safetensors`` or ``X.json``.
        map_location: device for the weights. Default ``"cpu"``.
        task: ``"segment"`` or ``"classify"`` to insist on that kind of checkpoint, or
            None (default) for either.

    Returns:
        The rebuilt :class:`SegmentationModel` (or ``Classifier``) with ``config`` from the
        JSON.

    Raises:
        ValueError: a pickle file (``.pt``, ``.pth``, ...), a malformed config, a
            checkpoint of another task than ``task``, an unknown architecture, or weights
            that do not match it.
        FileNotFoundError: one of the two files is missing.

    Example:
        >>> from segshield.models import build_model
        >>> import tempfile, os
        >>> stem = os.path.join(tempfile.mkdtemp(), "m")
        >>> _ = save(build_model("small", width=4), stem)
        >>> load(stem + ".json").num_classes
        1
    """
    return restore(path, _task_config(path, task), map_location=map_location)


def _task_config(path: str | Path, task: str | None) -> dict[str, Any]:
    """:func:`read_config`, plus a known task (``task`` when given) and architecture."""
    config = read_config(path)
    _, json_path = checkpoint_paths(path)
    found = config.get("task", SEGMENT)
    if found not in TASKS:
        raise ValueError(f"{json_path}: unknown task {found!r}; valid: {', '.join(TASKS)}")
    if task is not None and found != task:
        raise ValueError(
            f"{json_path}: a {_KIND[found]} checkpoint, not a {_KIND[task]} one (its 'task' "
            f"is {found!r}); load it with segshield.models.load"
        )
    if config["architecture"] not in list_models(found):
        raise ValueError(
            f"{json_path}: unknown architecture {config['architecture']!r}; valid "
            f"{_KIND[found]} architectures: {', '.join(list_models(found))}"
        )
    return config


def check_checkpoint(path: str | Path, *, task: str | None = None) -> dict[str, Any]:
    """Check a checkpoint before any work: its JSON, and that its weights fit it.

    Reads the JSON and only the header (names and shapes) of the safetensors file, and
    builds the network of the JSON on the CPU to compare; no weights are read.

    Args:
        path: ``X``, ``X.safetensors`` or ``X.json``.
        task: ``"segment"`` or ``"classify"`` to insist on that kind, or None for either.

    Returns:
        The checked JSON config.

    Raises:
        FileNotFoundError: one of the two files is missing.
        ValueError: as :func:`load`; the message is one line naming the file.

    Example:
        >>> from segshield.models import build_model
        >>> import tempfile, os
        >>> stem = os.path.join(tempfile.mkdtemp(), "m")
        >>> _ = save(build_model("small", width=4), stem)
        >>> check_checkpoint(stem)["architecture"]
        'small'
    """
    from safetensors import SafetensorError, safe_open

    config = _task_config(path, task)
    weights_path, json_path = checkpoint_paths(path)
    _check_weights_file(weights_path, json_path)
    try:
        with safe_open(str(weights_path), "pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except SafetensorError as exc:
        raise ValueError(
            f"{weights_path}: not a safetensors file ({exc}); segshield never loads pickles"
        ) from exc
    model = _build(config, json_path)
    problem = weights_mismatch(model.state_dict(), shapes)
    if problem:
        raise ValueError(_mismatch_message(weights_path, json_path, problem))
    return config


def weights_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """One line on how the tensors ``found`` differ from a model's ``expected`` state, or None.

    Args:
        expected: name -> tensor (or shape) the model needs.
        found: name -> tensor (or shape) in the file.

    Returns:
        ``None`` when names and shapes agree; else counts of the missing, unexpected and
        reshaped tensors, each with its first example.

    Example:
        >>> weights_mismatch({"a": (2,), "b": (3,)}, {"a": (4,), "c": (1,)})
        '1 missing (first b), 1 unexpected (first c), 1 of another shape (first a: (4,) in the file, (2,) expected)'
    """  # noqa: E501
    shape = {k: tuple(getattr(v, "shape", v)) for k, v in expected.items()}
    got = {k: tuple(getattr(v, "shape", v)) for k, v in found.items()}
    missing = [k for k in shape if k not in got]
    extra = [k for k in got if k not in shape]
    reshaped = [k for k in shape if k in got and got[k] != shape[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (first {extra[0]})")
    if reshaped:
        k = reshaped[0]
        parts.append(
            f"{len(reshaped)} of another shape (first {k}: {got[k]} in the file, "
            f"{shape[k]} expected)"
        )
    return ", ".join(parts) or None


def _mismatch_message(weights_path: Path, json_path: Path, problem: str) -> str:
    return (
        f"{weights_path}: weights do not match the network described by {json_path.name} "
        f"({problem}); the two files come from different models: keep each "
        ".safetensors with the .json written beside it"
    )


def _check_weights_file(weights_path: Path, json_path: Path) -> None:
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: checkpoint weights not found next to {json_path}")


def _build(config: dict[str, Any], json_path: Path, build: Any = build_model) -> torch.nn.Module:
    """The network of a checked config (random weights)."""
    try:
        return build(
            config["architecture"],
            task=config.get("task", SEGMENT),
            num_classes=config["num_classes"],
            in_channels=config["in_channels"],
            mean=config["mean"],
            std=config["std"],
            class_names=config["class_names"],
            **config["arch_kwargs"],
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{json_path}: invalid model settings ({exc})") from exc


def restore(
    path: str | Path,
    config: dict[str, Any],
    build: Any = build_model,
    map_location: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Rebuild a model from its checked ``config`` and load its safetensors weights.

    Args:
        path: ``X``, ``X.safetensors`` or ``X.json``.
        config: the JSON config, already read by :func:`read_config`.
        build: factory ``build(architecture, task=, num_classes=, in_channels=, mean=,
            std=, class_names=, **arch_kwargs)``. Default :func:`build_model`.
        map_location: device for the weights. Default ``"cpu"``.

    Returns:
        The model in eval mode with ``config`` merged into ``model.config``.

    Raises:
        FileNotFoundError: the weights file is missing.
        ValueError: not a safetensors file, invalid settings, or weights that do not
            match the architecture.
    """
    weights_path, json_path = checkpoint_paths(path)
    _check_weights_file(weights_path, json_path)
    state = read_safetensors(weights_path)
    model = _build(config, json_path, build)
    problem = weights_mismatch(model.state_dict(), state)
    if problem:
        raise ValueError(_mismatch_message(weights_path, json_path, problem))
    model.load_state_dict(state, strict=True)
    keep = {k: v for k, v in config.items() if k not in ("format", "format_version")}
    model.config.update({k: v for k, v in keep.items() if k not in ("mean", "std")})
    return model.to(map_location).eval()


def _refuse_pickle(p: Path) -> None:
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise ValueError(
            f"{p}: refusing to load a {p.suffix} file: it is a pickle, and segshield never "
            "unpickles (arbitrary code execution). Use a checkpoint X.safetensors + X.json, "
            "or segshield.models.wrap('model.ts') for a TorchScript file"
        )
