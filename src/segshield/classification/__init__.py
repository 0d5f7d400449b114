"""Image classifiers downstream of segmentation: glaucoma (fundus) and malignancy (skin).

Small CNN classifiers that take ``[0, 1]`` images and return ``(B, K)`` logits
(:mod:`~segshield.classification.models`), image-level labels
(:mod:`~segshield.classification.labels`), training (:func:`fit_classifier`, behind
``segshield train --task classify``) and the clean / attacked / defended evaluation
(:func:`evaluate_classifier`) used by the evaluation harness (issue 7).
"""

from segshield.classification.evaluate import evaluate_classifier
from segshield.classification.labels import (
    CLASS_NAMES,
    TASKS,
    dataset_labels,
    item_label,
    task_for_kind,
)
from segshield.classification.models import (
    CNN,
    Classifier,
    build_classifier,
    list_classifiers,
    load_classifier,
    save_classifier,
)
from segshield.classification.training import classifier_accuracy, fit_classifier

__all__ = [
    "CLASS_NAMES",
    "CNN",
    "Classifier",
    "TASKS",
    "build_classifier",
    "classifier_accuracy",
    "dataset_labels",
    "evaluate_classifier",
    "fit_classifier",
    "item_label",
    "list_classifiers",
    "load_classifier",
    "save_classifier",
    "task_for_kind",
]
