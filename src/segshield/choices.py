"""The choice tuples of the library and the CLI, in one module that does not import torch.

The command line builds its parser from these tuples (``segshield --help`` stays fast and
torch-free); library modules import them from here or are checked equal to them by the
test suite. Order matters: the first entry of a tuple is listed first in messages. The
gradient policies are declared in :mod:`segshield.gradients` and re-exported here.

Example:
    >>> from segshield.choices import SPLITS, ADAPTIVE_GRADIENTS
    >>> SPLITS
    ('train', 'val', 'test', 'all')
    >>> ADAPTIVE_GRADIENTS
    ('bpda', 'smooth')
"""

from __future__ import annotations

from segshield.gradients import ADAPTIVE_GRADIENTS, GRADIENTS

__all__ = [
    "ADAPTIVE_GRADIENTS",
    "DEVICE_CHOICES",
    "EXECUTORS",
    "GRADIENTS",
    "PNG_BITS",
    "PRECISIONS",
    "PROTOCOLS",
    "REPORT_FORMATS",
    "REPORT_TABLES",
    "REPRODUCE_DATASETS",
    "RESIZE_POLICIES",
    "REPRODUCE_TARGETS",
    "SPLITS",
    "SUBSET_ORDERS",
    "SUITES",
    "TABLE_PAD_MODES",
    "TARGET_KINDS",
    "TRAIN_TASKS",
    "UNTARGETED",
]

#: Data set splits: the official folders or the seeded 70/15/15 split, or every item.
SPLITS = ("train", "val", "test", "all")
#: Training precisions (``segshield.training``): float32, or bfloat16 autocast.
PRECISIONS = ("fp32", "bf16")
#: Padding of the FR table tuner (``segshield.tuning``): edge replication or zeros.
TABLE_PAD_MODES = ("edge", "zero")
#: Target-mask kinds of ``segshield.attacks.make_targets``.
TARGET_KINDS = (
    "other-gt",
    "empty",
    "full",
    "shift",
    "scale",
    "cup-up",
    "lesion-down",
    "last-gt",
)
#: The target spec of an untargeted attack (``segshield attack --target none``).
UNTARGETED = "none"
#: Formats of ``segshield.evaluation.format_summary``.
REPORT_FORMATS = ("md", "csv", "json")
#: Tables of a results store: segmentation rows or classifier rows.
REPORT_TABLES = ("results", "classifier")
#: What ``segshield train`` trains: a segmentation model or a classifier.
TRAIN_TASKS = ("segment", "classify")
#: Device names every command accepts (``cuda:N`` is accepted too).
DEVICE_CHOICES = ("auto", "cpu", "cuda")
#: Where an evaluation's cells run (``--executor``): this process, or a Ray cluster.
EXECUTORS = ("local", "ray")
#: Loader resize policies: resize to the asked size, or first pad to a square, then resize.
RESIZE_POLICIES = ("resize", "pad")
#: ``segshield reproduce --dataset`` names.
REPRODUCE_DATASETS = ("isic2017", "origa", "paddleseg")
#: ``segshield reproduce --protocol`` names (``segshield.evaluation.protocols``).
PROTOCOLS = ("fr-paper", "quick")
#: ``segshield reproduce --target`` kinds: a seeded derangement, or the last image's mask.
REPRODUCE_TARGETS = ("other-gt", "last-gt")
#: How ``--limit`` picks items: a seeded random subset, or the first N (``--first``).
SUBSET_ORDERS = ("random", "first")
#: Bit depths of the PNG files ``segshield attack`` writes.
PNG_BITS = (8, 16)
#: Attack suites of ``segshield evaluate --suite`` (``segshield.evaluation.suites``).
SUITES = ("standard",)
