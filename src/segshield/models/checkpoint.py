"""Checkpoints: ``X.safetensors`` (weights) + ``X.json`` (config), written atomically.

Loading never unpickles: weights come from safetensors, settings from JSON, and the
network is rebuilt from the registry by ``config["architecture"]`` and
``config["arch_kwargs"]``. ``.pt``/``.pth``/``.pkl`` files are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from segshield.models.base import SegmentationModel
from segshield.utils.imageio import atomic_write_bytes

__all__ = [
    "save",
    "load",
    "restore",
    "checkpoint_paths",
    "read_config",
    "FORMAT",
    "FORMAT_VERSION",
]

FORMAT = "segshield-model"
FORMAT_VERSION = 1
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")

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


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(X.safetensors, X.json)`` for ``X``, ``X.safetensors`` or ``X.json``.

    Example:
        >>> [p.name for p in checkpoint_paths("runs/model.json")]
        ['model.safetensors', 'model.json']
    """
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save(model: SegmentationModel, path: str | Path) -> tuple[Path, Path]:
    """Write ``model`` as ``PATH.safetensors`` + ``PATH.json``, each atomically.

    Args:
        model: a :class:`SegmentationModel` built by :func:`build_model` (its
            ``config["architecture"]`` must be a registry name).
        path: the stem ``X``, or ``X.safetensors`` / ``X.json``.

    Returns:
        The two paths written.

    Raises:
        TypeError: ``model`` is not a ``SegmentationModel``.
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

    from segshield.models.registry import MODELS

    if not isinstance(model, SegmentationModel):
        raise TypeError(
            f"model: expected a segshield SegmentationModel, got {type(model).__name__}"
        )
    arch = model.config.get("architecture")
    if arch not in MODELS:
        raise ValueError(
            f"model: cannot save architecture {arch!r}: only registry models "
            f"({', '.join(MODELS)}) can be rebuilt from a checkpoint; keep the original "
            "TorchScript/ONNX file or save your own module's weights"
        )
    weights_path, json_path = checkpoint_paths(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    config = dict(model.config)
    config["format"] = FORMAT
    config["format_version"] = FORMAT_VERSION
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=True)
    atomic_write_bytes(weights_path, st_save(state, metadata={"format": FORMAT}))
    atomic_write_bytes(json_path, (text + "\n").encode("utf-8"))
    return weights_path, json_path


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
    try:
        config = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{json_path}: not valid JSON ({exc}); the file is damaged") from exc
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


def load(path: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a checkpoint written by :func:`save`, in eval mode; never unpickles.

    A classifier checkpoint (``"task": "classify"`` in its JSON, written by
    :func:`segshield.classification.save_classifier`) is handed to
    :func:`segshield.classification.load_classifier`, so one call loads either kind.

    Args:
        path: ``X``, ``X.safetensors`` or ``X.json``.
        map_location: device for the weights. Default ``"cpu"``.

    Returns:
        The rebuilt :class:`SegmentationModel` (or ``Classifier``) with ``config`` from the
        JSON.

    Raises:
        ValueError: a pickle file (``.pt``, ``.pth``, ...), a malformed config, an
            unknown architecture, or weights that do not match it.
        FileNotFoundError: one of the two files is missing.

    Example:
        >>> from segshield.models import build_model
        >>> import tempfile, os
        >>> stem = os.path.join(tempfile.mkdtemp(), "m")
        >>> _ = save(build_model("small", width=4), stem)
        >>> load(stem + ".json").num_classes
        1
    """
    from segshield.models.registry import MODELS, build_model

    config = read_config(path)
    if config.get("task") == "classify":
        from segshield.classification import load_classifier

        return load_classifier(path, map_location=map_location)
    weights_path, json_path = checkpoint_paths(path)
    if config["architecture"] not in MODELS:
        raise ValueError(
            f"{json_path}: unknown architecture {config['architecture']!r}; "
            f"valid: {', '.join(MODELS)}"
        )
    return restore(path, config, build_model, map_location)


def restore(
    path: str | Path,
    config: dict[str, Any],
    build: Any,
    map_location: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Rebuild a model from its checked ``config`` and load its safetensors weights.

    The one loading path shared by segmentation models and classifiers.

    Args:
        path: ``X``, ``X.safetensors`` or ``X.json``.
        config: the JSON config, already read by :func:`read_config`.
        build: factory ``build(architecture, num_classes=, in_channels=, mean=, std=,
            class_names=, **arch_kwargs)``.
        map_location: device for the weights. Default ``"cpu"``.

    Returns:
        The model in eval mode with ``config`` merged into ``model.config``.

    Raises:
        FileNotFoundError: the weights file is missing.
        ValueError: not a safetensors file, invalid settings, or weights that do not
            match the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    weights_path, json_path = checkpoint_paths(path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: checkpoint weights not found next to {json_path}")
    try:
        state = st_load(weights_path.read_bytes())
    except SafetensorError as exc:
        raise ValueError(
            f"{weights_path}: not a safetensors file ({exc}); segshield never loads pickles"
        ) from exc
    try:
        model = build(
            config["architecture"],
            num_classes=config["num_classes"],
            in_channels=config["in_channels"],
            mean=config["mean"],
            std=config["std"],
            class_names=config["class_names"],
            **config["arch_kwargs"],
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{json_path}: invalid model settings ({exc})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{weights_path}: weights do not match the architecture in {json_path.name} ({exc})"
        ) from exc
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
