"""Frequency analysis and FR table tuning (Liu et al., MICCAI 2020, made a feature).

- :func:`frequency_analysis`: per block-DCT coefficient, the energy of adversarial
  perturbations vs clean images and the model's sensitivity to quantising it alone.
- :func:`tune_table`: seeded, resumable search of FR band layouts and steps that
  maximises recovered Dice under a benign-loss bound.
- :func:`analysis_html`, :func:`tuning_html`: report sections.
"""

from segshield.tuning.analysis import FrequencyAnalysis, coefficient_energy, frequency_analysis
from segshield.tuning.html import analysis_html, tuning_html
from segshield.tuning.pareto import dominating, pareto_front
from segshield.tuning.plots import heatmap_png, pareto_png, pareto_svg
from segshield.tuning.quantize import apply_tables, single_coefficient_tables
from segshield.tuning.search import (
    PAPER_CANDIDATE,
    Candidate,
    SearchSpace,
    TuneResult,
    band_table,
    tables_beating_paper,
    tune_table,
)

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
    "TuneResult",
    "band_table",
    "tables_beating_paper",
    "tune_table",
]
