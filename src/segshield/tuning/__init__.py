"""Frequency analysis and FR table tuning (Liu et al., MICCAI 2020, made a feature).

- :func:`frequency_analysis`: per block-DCT coefficient, the energy of adversarial
  perturbations vs clean images and the model's sensitivity to quantising it alone.
- :func:`tune_table`: seeded, resumable search of FR band layouts and steps that
  maximises recovered Dice under a benign-loss bound; its parts are the search space
  (:mod:`~segshield.tuning.space`), the objective (:mod:`~segshield.tuning.objective`),
  the settings (:mod:`~segshield.tuning.config`) and the report
  (:mod:`~segshield.tuning.report`).
- :func:`analysis_html`, :func:`tuning_html`: report sections.
"""

from segshield._deprecation import moved_names
from segshield.tuning.analysis import FrequencyAnalysis, coefficient_energy, frequency_analysis
from segshield.tuning.config import TuneConfig, TuneData
from segshield.tuning.html import analysis_html, tuning_html
from segshield.tuning.pareto import dominating, pareto_front
from segshield.tuning.plots import heatmap_png, pareto_png, pareto_svg
from segshield.tuning.quantize import apply_tables, single_coefficient_tables
from segshield.tuning.report import TuneResult, tables_beating_paper
from segshield.tuning.search import tune_table
from segshield.tuning.space import PAPER_CANDIDATE, Candidate, SearchSpace, layout_band_table

__all__ = [
    "FrequencyAnalysis",
    "coefficient_energy",
    "frequency_analysis",
    "analysis_html",
    "tuning_html",
    "dominating",
    "pareto_front",
    "heatmap_png",
    "pareto_png",
    "pareto_svg",
    "apply_tables",
    "single_coefficient_tables",
    "PAPER_CANDIDATE",
    "Candidate",
    "SearchSpace",
    "TuneConfig",
    "TuneData",
    "TuneResult",
    "tables_beating_paper",
    "tune_table",
]

__getattr__ = moved_names(
    __name__,
    {
        "band_table": (
            "segshield.defenses.tables.band_table(pd, ac, gd, pd_size, ac_size, layout=...), "
            "which returns float64",
            lambda: layout_band_table,
        )
    },
)
