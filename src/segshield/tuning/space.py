"""The FR table search space: candidate tables and the grid they are drawn from.

A candidate is one FR quantisation table (Liu et al., MICCAI 2020; docs/ALGORITHMS.md
§2) described by its band layout (square bands ``max(u, v) < size`` as in the paper, or
JPEG zig-zag bands), the steps of its three bands and, for colour images, a factor per
channel (one table per channel: a model may read lesion boundaries mostly from one
channel, so the others can be quantised harder) and its colour space: the paper's RGB
channels, or JPEG's luma and chroma (``ycbcr``: the band table on Y, that table times a
chroma factor on Cb and Cr, chroma at full or half resolution). :class:`SearchSpace` is
the grid of the search, with the moves of its coordinate descent
(:meth:`SearchSpace.neighbours`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from segshield._checks import check_choice, check_number
from segshield.defenses.fr import FR_SPACES
from segshield.defenses.tables import PAPER_BANDS, PAPER_STEPS, TABLE_LAYOUTS, band_table
from segshield.defenses.ycbcr import SUBSAMPLINGS

__all__ = ["Candidate", "SearchSpace", "PAPER_CANDIDATE", "PAPER_YCBCR", "stack_tables"]

# Candidate fields of the YCbCr space and their RGB values (left out of RGB keys).
_YCBCR_DEFAULTS = {"space": "rgb", "subsample": "444", "chroma_scale": 1.0}


def _check_sizes(layout: str, pd_size: int, ac_size: int) -> None:
    """The search's band sizes: ``1 <= pd_size < ac_size <= 8`` (square) or ``<= 63``.

    Stricter than :func:`~segshield.defenses.tables.band_table` (no empty PD band, AC
    band not empty), as the tuner has always checked them.

    Raises:
        ValueError: a bad layout or sizes out of range.
    """
    check_choice("layout", layout, TABLE_LAYOUTS)
    limit = 8 if layout == "square" else 63
    check_number("pd_size", pd_size, low=1, high=limit - 1, integer=True)
    check_number("ac_size", ac_size, low=pd_size + 1, high=limit, integer=True)


def layout_band_table(layout: str, pd_size: int, ac_size: int, pd: float, ac: float, gd: float):
    """The tuner's former ``band_table``: layout first, float32 (deprecated form).

    Reference: Liu et al., MICCAI 2020 (docs/ALGORITHMS.md §2). Kept for the deprecated
    alias ``segshield.tuning.band_table``; new code calls
    :func:`segshield.defenses.tables.band_table` (steps first, float64).

    Args:
        layout: ``"square"`` or ``"zigzag"``.
        pd_size: PD band size, ``1 <= pd_size < ac_size``.
        ac_size: AC band size, ``<= 8`` (square) or ``<= 63`` (zigzag).
        pd, ac, gd: steps of the three bands on the 0..255 scale, > 0.

    Shape:
        Returns ``(8, 8)`` float32, indexed ``[u, v]``.

    Returns:
        The table of quantisation steps.

    Raises:
        ValueError: bad layout, sizes or steps.

    Example:
        >>> t = layout_band_table("square", *PAPER_BANDS, *PAPER_STEPS)
        >>> (t[1, 1].item(), t[3, 0].item(), t[4, 4].item()) == PAPER_STEPS, t.dtype
        (True, torch.float32)
    """
    _check_sizes(layout, pd_size, ac_size)
    return band_table(pd, ac, gd, int(pd_size), int(ac_size), layout=layout).float()


def _canonical_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """Scales as floats, ``()`` when every scale is 1 (one shared table).

    Raises:
        ValueError: a scale <= 0.
    """
    out = tuple(float(v) for v in scales)
    for v in out:
        check_number("channel_scales", v, low=0, low_inclusive=False)
    return () if set(out) <= {1.0} else out


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: a band layout, three steps, per-channel scales.

    ``channel_scales`` multiplies the whole table of channel ``c`` by ``channel_scales[c]``
    (one table per channel, docs/ALGORITHMS.md §2); empty (the default) means one table
    for every channel. Scales that are all 1 are stored as empty, so equal tables have
    one key. With ``space="ycbcr"`` the band table refines luma Y and the band table
    times ``chroma_scale`` chroma Cb and Cr, at half resolution with ``subsample="420"``
    (FR in YCbCr, :func:`segshield.defenses.ycbcr.ycbcr_refine`); an RGB candidate's key
    is as before the colour space existed.

    Attributes:
        layout: ``"square"`` or ``"zigzag"``.
        pd_size, ac_size: band sizes, ``1 <= pd_size < ac_size``.
        pd, ac, gd: band steps on the 0..255 scale.
        channel_scales: per-channel factors, each > 0, or ``()`` (RGB only).
        space: ``"rgb"`` (default) or ``"ycbcr"``.
        subsample: ``"444"`` (default) or ``"420"`` (``ycbcr`` only).
        chroma_scale: chroma table = band table times this, > 0 (``ycbcr`` only; 1.0).

    Raises:
        ValueError: a channel scale <= 0, or YCbCr settings on an RGB candidate.

    Example:
        >>> c = Candidate("square", 2, 4, 20.0, 3.0, 40.0, (1.0, 2.0, 2.0))
        >>> c.table().shape, c.table()[1, 0, 0].item()
        (torch.Size([3, 8, 8]), 40.0)
    """

    layout: str
    pd_size: int
    ac_size: int
    pd: float
    ac: float
    gd: float
    channel_scales: tuple[float, ...] = ()
    space: str = "rgb"
    subsample: str = "444"
    chroma_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_scales", _canonical_scales(self.channel_scales))
        check_choice("space", self.space, FR_SPACES)
        check_choice("subsample", self.subsample, SUBSAMPLINGS)
        check_number("chroma_scale", self.chroma_scale, low=0, low_inclusive=False)
        object.__setattr__(self, "chroma_scale", float(self.chroma_scale))
        if self.space == "rgb" and (self.subsample, self.chroma_scale) != ("444", 1.0):
            raise ValueError(
                f"subsample, chroma_scale: only for space='ycbcr' candidates, got "
                f"subsample={self.subsample!r}, chroma_scale={self.chroma_scale:g} with 'rgb'"
            )
        if self.space == "ycbcr" and self.channel_scales:
            raise ValueError(
                "channel_scales: RGB candidates only; a YCbCr candidate scales its chroma "
                "table with chroma_scale"
            )

    @classmethod
    def from_layout(cls, layout: dict[str, Any]) -> Candidate:
        """A candidate from its ``asdict`` form (``"layout"`` of the tune JSON).

        Example:
            >>> Candidate.from_layout(asdict(PAPER_CANDIDATE)) == PAPER_CANDIDATE
            True
        """
        return cls(**{**layout, "channel_scales": tuple(layout.get("channel_scales") or ())})

    def key(self) -> str:
        """Canonical string used as the cache key (without ``channel_scales`` when empty,
        without the colour-space fields for RGB)."""
        d = asdict(self)
        if not self.channel_scales:
            del d["channel_scales"]  # keys of shared tables as before per-channel scales
        if self.space == "rgb":
            for name in _YCBCR_DEFAULTS:  # RGB keys as before the colour space
                del d[name]
        return json.dumps(d, sort_keys=True)

    def label(self) -> str:
        """A short description, e.g. ``ycbcr 420 square 2/4 30/5/60 chroma x2``."""
        sizes = f"{self.layout} {self.pd_size}/{self.ac_size} {self.pd:g}/{self.ac:g}/{self.gd:g}"
        if self.space == "rgb":
            scales = "/".join(f"{v:g}" for v in self.channel_scales)
            return f"rgb {sizes}" + (f" channels x{scales}" if scales else "")
        return f"ycbcr {self.subsample} {sizes} chroma x{self.chroma_scale:g}"

    def defense(self, pad: str = "edge") -> Any:
        """This table as a :class:`~segshield.defenses.fr.FrequencyRefinement`.

        Example:
            >>> Candidate("square", 2, 4, 30, 5, 60, space="ycbcr").defense().spec()[:26]
            'fr:space=ycbcr,subsample=4'
        """
        from segshield.defenses.fr import FrequencyRefinement

        extra = {} if self.space == "rgb" else {"space": self.space, "subsample": self.subsample}
        return FrequencyRefinement.from_table(self.table(), pad=pad, **extra)

    def table(self) -> torch.Tensor:
        """The ``(8, 8)`` float32 table, or ``(C, 8, 8)`` with per-channel scales.

        Raises:
            ValueError: sizes or steps out of range (see :func:`layout_band_table`).
        """
        base = layout_band_table(self.layout, self.pd_size, self.ac_size, self.pd, self.ac, self.gd)
        if self.space == "ycbcr" and self.chroma_scale != 1.0:
            return torch.stack([base, base * self.chroma_scale, base * self.chroma_scale])
        if not self.channel_scales:
            return base
        return base * torch.tensor(self.channel_scales, dtype=base.dtype)[:, None, None]


#: The paper's table (its demo script's steps, square bands).
PAPER_CANDIDATE = Candidate("square", *PAPER_BANDS, *PAPER_STEPS)
#: The paper's table on luma and chroma alike (the YCbCr search's first point).
PAPER_YCBCR = Candidate("square", *PAPER_BANDS, *PAPER_STEPS, space="ycbcr")


def stack_tables(cands: Sequence[Candidate], channels: int) -> torch.Tensor:
    """The tables of candidates as one batch, shared tables repeated per channel.

    Args:
        cands: candidates, at least one.
        channels: image channels ``C``.

    Shape:
        Returns ``(V, C, 8, 8)`` float32 for ``V = len(cands)``.

    Raises:
        ValueError: a candidate's ``channel_scales`` do not match ``channels``, or a
            YCbCr candidate (its table is not applied to the image channels).

    Example:
        >>> stack_tables([PAPER_CANDIDATE], 3).shape
        torch.Size([1, 3, 8, 8])
    """
    out = []
    for c in cands:
        if c.space != "rgb":
            raise ValueError(
                f"cands: {c.label()} works in YCbCr, not on the image channels; score it "
                "with segshield.tuning.objective.candidates_dice"
            )
        if c.channel_scales and len(c.channel_scales) != channels:
            raise ValueError(
                f"channel_scales: expected one scale per image channel ({channels}), got "
                f"{len(c.channel_scales)} in {c.key()}"
            )
        out.append(c.table().expand(channels, 8, 8))
    return torch.stack(out)


def _adjacent(grid: Sequence[float], value: float) -> list[float]:
    """The grid values just below and above ``value`` (which joins the grid)."""
    values = sorted(set(grid) | {value})
    i = values.index(value)
    return [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values)]


@dataclass(frozen=True)
class SearchSpace:
    """Grid the search draws from; every value list is sorted ascending.

    Attributes:
        square_sizes: ``(pd_size, ac_size)`` pairs of the square layout.
        zigzag_sizes: ``(pd_size, ac_size)`` pairs of the zig-zag layout.
        pd_steps, ac_steps, gd_steps: steps of each band (0..255 scale).
        channel_scales: factors of the per-channel tables of images with C >= 2
            channels, each > 0: channel ``c``'s table is the band table times a factor
            from this list. ``(1.0,)`` searches shared tables only. Grid points have at
            least one channel at the smallest factor (the rest would repeat a coarser
            shared table); coordinate descent may leave that rule.
        spaces: colour spaces searched, ``("rgb",)`` (default), ``("ycbcr",)`` or both
            (``ycbcr`` for 3-channel images only).
        chroma_scales: ``ycbcr``: factors of the chroma table over the luma table.
        subsamples: ``ycbcr``: chroma subsampling modes tried (``"444"``, ``"420"``).

    Example:
        >>> len(SearchSpace().shared_candidates())
        8085
    """

    square_sizes: tuple[tuple[int, int], ...] = tuple(
        (p, a) for p in (1, 2, 3) for a in range(p + 1, 7)
    )
    zigzag_sizes: tuple[tuple[int, int], ...] = tuple(
        (p, a) for p in (1, 3, 6, 10) for a in (6, 10, 15, 21, 28, 36) if a > p
    )
    pd_steps: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0, 60.0)
    ac_steps: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0)
    gd_steps: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0, 60.0, 80.0, 120.0)
    channel_scales: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    spaces: tuple[str, ...] = ("rgb",)
    chroma_scales: tuple[float, ...] = (1.0, 2.0, 4.0)
    subsamples: tuple[str, ...] = SUBSAMPLINGS

    def __post_init__(self) -> None:
        if not self.spaces or len(set(self.spaces)) != len(self.spaces):
            raise ValueError(f"spaces: expected distinct colour spaces, got {self.spaces}")
        for name in self.spaces:
            check_choice("spaces", name, FR_SPACES)
        for v in self.chroma_scales:
            check_number("chroma_scales", v, low=0, low_inclusive=False)
        for name in self.subsamples:
            check_choice("subsamples", name, SUBSAMPLINGS)
        if "ycbcr" in self.spaces and not (self.chroma_scales and self.subsamples):
            raise ValueError("chroma_scales, subsamples: the ycbcr space needs one of each")

    def searched_spaces(self, channels: int) -> tuple[str, ...]:
        """The colour spaces searched for images of ``channels`` channels.

        Raises:
            ValueError: only ``ycbcr`` asked for images that are not RGB.

        Example:
            >>> SearchSpace(spaces=("rgb", "ycbcr")).searched_spaces(1)
            ('rgb',)
        """
        out = tuple(s for s in self.spaces if s == "rgb" or channels == 3)
        if not out:
            raise ValueError(
                f"spaces: ycbcr needs RGB images (3 channels), got {channels}; add rgb"
            )
        return out

    def dress(self, c: Candidate, space: str, rng: Any, channels: int) -> Candidate:
        """A shared-table grid point in ``space`` with a random channel or chroma setting.

        ``rgb``: a random per-channel scale choice (one ``rng.choice`` call, as the search
        always drew); ``ycbcr``: a random chroma factor and subsampling.
        """
        if space == "rgb":
            return replace(c, channel_scales=rng.choice(self.scale_choices(channels)))
        return replace(
            c,
            space="ycbcr",
            chroma_scale=rng.choice(sorted(self.chroma_scales)),
            subsample=rng.choice(self.subsamples),
        )

    def sizes(self, layout: str) -> tuple[tuple[int, int], ...]:
        """The ``(pd_size, ac_size)`` pairs of a layout."""
        return self.square_sizes if layout == "square" else self.zigzag_sizes

    def shared_candidates(self) -> list[Candidate]:
        """Every grid point with one table for all channels, in a fixed order."""
        out = []
        for layout in TABLE_LAYOUTS:
            for (p, a), s1, s2, s3 in itertools.product(
                self.sizes(layout), self.pd_steps, self.ac_steps, self.gd_steps
            ):
                out.append(Candidate(layout, p, a, s1, s2, s3))
        return out

    def scale_choices(self, channels: int) -> list[tuple[float, ...]]:
        """Per-channel scale tuples of the grid for ``channels`` channels (``()`` first).

        Example:
            >>> SearchSpace(channel_scales=(1.0, 2.0)).scale_choices(2)
            [(), (1.0, 2.0), (2.0, 1.0)]
        """
        grid = sorted(set(self.channel_scales))
        if channels < 2 or len(grid) < 2:
            return [()]
        combos = itertools.product(grid, repeat=channels)
        return list(dict.fromkeys(_canonical_scales(s) for s in combos if min(s) == grid[0]))

    def all_candidates(self, channels: int = 1) -> list[Candidate]:
        """Every grid point for images of ``channels`` channels, in a fixed order."""
        out = []
        if "rgb" in self.searched_spaces(channels):
            out += [
                replace(c, channel_scales=s)
                for c in self.shared_candidates()
                for s in self.scale_choices(channels)
            ]
        if "ycbcr" in self.searched_spaces(channels):
            out += [
                replace(c, space="ycbcr", chroma_scale=f, subsample=m)
                for c in self.shared_candidates()
                for f in sorted(self.chroma_scales)
                for m in self.subsamples
            ]
        return out

    def neighbours(self, c: Candidate, channels: int = 1) -> list[Candidate]:
        """Candidates one move away: the next band sizes, the next step of one band, or
        any other factor for one channel (the effect of a channel's factor need not be
        monotone, and there are few factors); in YCbCr the next chroma factor or the
        other subsampling. A move never changes the colour space.

        Example:
            >>> moves = SearchSpace().neighbours(PAPER_CANDIDATE)
            >>> [n.pd for n in moves if n.pd != PAPER_CANDIDATE.pd]
            [20.0, 40.0]
        """
        out = []
        sizes = list(self.sizes(c.layout))
        if (c.pd_size, c.ac_size) in sizes:
            i = sizes.index((c.pd_size, c.ac_size))
            for j in (i - 1, i + 1):
                if 0 <= j < len(sizes):
                    p, a = sizes[j]
                    out.append(replace(c, pd_size=p, ac_size=a))
        for name, grid in (("pd", self.pd_steps), ("ac", self.ac_steps), ("gd", self.gd_steps)):
            out += [replace(c, **{name: v}) for v in _adjacent(grid, getattr(c, name))]
        if c.space == "ycbcr":
            out += [
                replace(c, chroma_scale=v) for v in _adjacent(self.chroma_scales, c.chroma_scale)
            ]
            out += [replace(c, subsample=m) for m in self.subsamples if m != c.subsample]
        elif channels >= 2 and len(set(self.channel_scales)) >= 2:  # as in scale_choices
            scales = c.channel_scales or (1.0,) * channels
            for k in range(channels):
                for v in sorted(set(self.channel_scales) - {scales[k]}):
                    out.append(replace(c, channel_scales=scales[:k] + (v,) + scales[k + 1 :]))
        return out
