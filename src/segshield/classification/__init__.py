"""Deprecated: the classifiers moved into the model, training and evaluation packages.

Every name still works here for one release, with a ``DeprecationWarning``:

- ``CNN``, ``Classifier`` -> :mod:`segshield.models`; ``build_classifier(name)`` ->
  ``segshield.models.build_model(name, task="classify")``; ``list_classifiers()`` ->
  ``list_models("classify")``; ``save_classifier`` / ``load_classifier`` ->
  ``segshield.models.save`` / ``load(path, task="classify")``;
- ``fit_classifier``, ``classifier_accuracy`` -> :mod:`segshield.training`;
- ``evaluate_classifier`` -> :mod:`segshield.evaluation`;
- ``CLASS_NAMES``, ``TASKS``, ``dataset_labels``, ``item_label``, ``task_for_kind`` ->
  :mod:`segshield.data.labels`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from segshield._deprecation import moved_names

__all__: list[str] = []


def _build_classifier(name: str, **settings: Any) -> torch.nn.Module:
    from segshield.models import build_model

    return build_model(name, task="classify", **settings)


def _list_classifiers() -> list[str]:
    from segshield.models import list_models

    return list_models("classify")


def _save_classifier(model: torch.nn.Module, path: str | Path) -> tuple[Path, Path]:
    from segshield.models import Classifier, save

    if not isinstance(model, Classifier):
        raise TypeError(f"model: expected a segshield Classifier, got {type(model).__name__}")
    return save(model, path)


def _load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    from segshield.models import load

    return load(path, map_location, task="classify")


def _at(module: str, name: str) -> tuple[str, Callable[[], Any]]:
    return f"{module}.{name}", lambda: getattr(importlib.import_module(module), name)


def _wrapper(new: str, fn: Callable[..., Any]) -> tuple[str, Callable[[], Any]]:
    return new, lambda: fn


#: every moved name -> (its new place, a getter)
MOVED: dict[str, tuple[str, Callable[[], Any]]] = {
    **{n: _at("segshield.models", n) for n in ("CNN", "Classifier")},
    **{n: _at("segshield.training", n) for n in ("fit_classifier", "classifier_accuracy")},
    "evaluate_classifier": _at("segshield.evaluation", "evaluate_classifier"),
    **{
        n: _at("segshield.data.labels", n)
        for n in ("CLASS_NAMES", "TASKS", "KIND_TASK", "dataset_labels", "item_label")
    },
    "task_for_kind": _at("segshield.data.labels", "task_for_kind"),
    "build_classifier": _wrapper(
        "segshield.models.build_model(name, task='classify')", _build_classifier
    ),
    "list_classifiers": _wrapper("segshield.models.list_models('classify')", _list_classifiers),
    "save_classifier": _wrapper("segshield.models.save", _save_classifier),
    "load_classifier": _wrapper("segshield.models.load(path, task='classify')", _load_classifier),
    "CLASSIFIERS": _at("segshield.models.registry", "CLASSIFIERS"),
    "TASK": _at("segshield.models", "CLASSIFY"),
}

__getattr__ = moved_names(__name__, MOVED)
