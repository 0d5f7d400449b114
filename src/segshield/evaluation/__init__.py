"""Evaluation: the harness, the results store, summaries, the HTML report and the demo.

- :func:`run_evaluation` runs models x datasets x attacks x defences (docs/ALGORITHMS.md
  §5) into a resumable :class:`ResultStore` (SQLite + manifest), configured by
  :class:`EvalConfig` (:func:`load_config` reads YAML or JSON); each task is scored by a
  small scorer (:mod:`~segshield.evaluation.scoring`: region scores for segmentation,
  accuracy for classifiers). :func:`evaluate_classifier` runs the classifier pass alone.
- :func:`worst_case_rows` derives the worst case per sample over the attacks of a run
  (``EvalConfig(worst_case=True)``); :func:`suite_specs` gives the attack specs of a
  named suite (``EvalConfig(suite="standard")``).
- :func:`summarize` and :func:`format_summary` aggregate and render the rows;
  :func:`render_report` writes the self-contained HTML report.
- :func:`run_demo` and :func:`run_reproduce` are ``segshield demo`` / ``reproduce``;
  :func:`attack_dataset` is ``segshield attack`` (adversarial images with their stats).

Example:
    >>> from segshield.evaluation import EvalConfig
    >>> EvalConfig(models=["m.safetensors"], datasets=["phantom-derm"]).defenses
    ['fr:pd=30,ac=5,gd=60', 'none']
"""

from segshield.evaluation.attack_dataset import AttackedSet, attack_dataset, write_stats
from segshield.evaluation.classify import evaluate_classifier
from segshield.evaluation.config import EvalConfig, load_config
from segshield.evaluation.demo import DemoSettings, cached_model, run_demo, run_reproduce
from segshield.evaluation.harness import quantize_8bit, run_evaluation
from segshield.evaluation.report import render_report, report_html
from segshield.evaluation.store import KEY_COLUMNS, ResultStore, build_manifest
from segshield.evaluation.suites import suite_specs
from segshield.evaluation.summary import MAIN_COLUMNS, format_summary, summarize
from segshield.evaluation.worst_case import WORST_CASE, worst_case_rows

__all__ = [
    "EvalConfig",
    "load_config",
    "run_evaluation",
    "evaluate_classifier",
    "quantize_8bit",
    "ResultStore",
    "KEY_COLUMNS",
    "build_manifest",
    "summarize",
    "format_summary",
    "MAIN_COLUMNS",
    "render_report",
    "report_html",
    "DemoSettings",
    "cached_model",
    "run_demo",
    "run_reproduce",
    "attack_dataset",
    "AttackedSet",
    "write_stats",
    "WORST_CASE",
    "worst_case_rows",
    "suite_specs",
]
