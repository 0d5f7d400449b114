"""Downstream diagnosis from masks: cup-to-disc ratio, glaucoma call, lesion measures.

Pure functions on masks (docs/ALGORITHMS.md §5): :func:`vertical_cdr`, :func:`cdr_from_mask`,
:func:`glaucoma_call`; the ABCD-rule lesion measures :func:`lesion_measures`; per-batch
downstream effects of a prediction (:func:`downstream_fundus`,
:func:`downstream_lesion`); and target masks that flip a diagnosis
(:func:`enlarge_cup`, :func:`shrink_lesion`).
"""

from segshield.diagnosis.cdr import (
    CUP,
    DISC,
    cdr_from_mask,
    glaucoma_call,
    vertical_cdr,
    vertical_extent,
)
from segshield.diagnosis.downstream import downstream_fundus, downstream_lesion
from segshield.diagnosis.lesion import (
    LESION,
    asymmetry,
    compactness,
    feret_diameter,
    lesion_area,
    lesion_measures,
)
from segshield.diagnosis.transforms import enlarge_cup, scale_region, shrink_lesion

__all__ = [
    "CUP",
    "DISC",
    "LESION",
    "asymmetry",
    "cdr_from_mask",
    "compactness",
    "downstream_fundus",
    "downstream_lesion",
    "enlarge_cup",
    "feret_diameter",
    "glaucoma_call",
    "lesion_area",
    "lesion_measures",
    "scale_region",
    "shrink_lesion",
    "vertical_cdr",
    "vertical_extent",
]
