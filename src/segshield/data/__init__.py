"""Segmentation data: procedural phantoms (the embedded default) and real-data loaders.

Entry point: :func:`load_dataset` with a spec ``"KIND[:PATH]"`` (see
:mod:`segshield.data.registry` for the kinds, :mod:`segshield.data.dataset` for the
resize policies and :mod:`segshield.data._pairs` for the seeded splits).

Example:
    >>> from segshield.data import load_dataset
    >>> ds = load_dataset("phantom-fundus", size=32, split="val", n=20)
    >>> len(ds), ds.regions["disc"], sorted(ds[0])
    (3, (1, 2), ['cdr', 'glaucoma', 'image', 'mask', 'name'])
"""

from segshield.data.dataset import RESIZE_POLICIES, Sample, SegDataset, resize_pair
from segshield.data.phantom_derm import Phantom, make_derm_phantom
from segshield.data.phantom_fundus import make_fundus_phantom
from segshield.data.registry import list_kinds, load_dataset, parse_spec

__all__ = [
    "load_dataset",
    "list_kinds",
    "parse_spec",
    "SegDataset",
    "Sample",
    "Phantom",
    "RESIZE_POLICIES",
    "resize_pair",
    "make_derm_phantom",
    "make_fundus_phantom",
]
