"""Frequency Refinement (FR): block-DCT quantisation with a segmentation-oriented table.

Reference: Liu et al., "Defending Deep Learning-based Biomedical Image Segmentation
from Adversarial Attacks: A Low-cost Frequency Refinement Approach", MICCAI 2020
(docs/ALGORITHMS.md §2). Per channel, on the 0..255 scale: pad to multiples of 8, 8x8
block DCT ``C = D B Dᵀ``, ``Ĉ = round(C / Q) · Q`` (half to even), inverse DCT, crop
back, clip to [0, 255], divide by 255. The arithmetic is
:func:`segshield.defenses.dct.quantize_blocks`; this module holds the table and the
settings, and reads and writes table files. With ``space="ycbcr"`` the same quantiser
runs on JPEG's luma and chroma planes (:func:`segshield.defenses.ycbcr.ycbcr_refine`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from segshield._checks import check_choice
from segshield.defenses.base import Defense
from segshield.defenses.dct import QUANTIZE_PAD_MODES, _quantize, quantize_blocks
from segshield.defenses.tables import (
    PAPER_BANDS,
    PAPER_STEPS,
    band_table,
    check_table,
    ijg_table,
    jpeg_quality_table,
    scale_table,
    zigzag_table,
)
from segshield.defenses.ycbcr import SUBSAMPLINGS, ycbcr_refine

__all__ = [
    "FrequencyRefinement",
    "frequency_refine",
    "band_table",
    "scale_table",
    "zigzag_table",
    "FR_PAD_MODES",
    "FR_SPACES",
]

#: Padding modes FR accepts (``"crop"`` would change the image size; crop the images
#: yourself with ``pad_to_multiple(x, 8, "crop")`` before FR if you want it).
FR_PAD_MODES = QUANTIZE_PAD_MODES
#: Colour spaces of FR: the paper's RGB channels, or JPEG's luma and chroma (JFIF YCbCr).
FR_SPACES = ("rgb", "ycbcr")
_DTYPES = {"auto": None, "float32": torch.float32, "float64": torch.float64}
_FILE_FORMAT = "segshield-fr-table"
_BAND_DEFAULTS = dict(
    zip(("pd", "ac", "gd", "pd_size", "ac_size"), PAPER_STEPS + PAPER_BANDS, strict=True)
)


def frequency_refine(x: torch.Tensor, table: Any, **settings: Any) -> torch.Tensor:
    """Frequency Refinement of a batch of images (the pure function behind the module).

    Reference: Liu et al., MICCAI 2020 (docs/ALGORITHMS.md §2 steps 1-5). The work is
    :func:`~segshield.defenses.dct.quantize_blocks`; FR insists on one table with
    steps > 0. The output is always cropped back to ``H x W`` (the paper's code returns
    the padded size).

    Args:
        x: images ``(B, C, H, W)`` in ``[0, 1]``, any C, H, W.
        table: steps ``(8, 8)`` or ``(C, 8, 8)`` on the 0..255 scale, > 0.
        **settings: ``pad`` (``"edge"``, default, or ``"zero"``, *paper-faithful*),
            ``clip`` (default True), ``smooth`` (default False), ``compute_dtype``
            (default None: float64 for ``pad="zero"`` or float64 input, else float32) and
            ``scale`` (default 255.0), as in :func:`~segshield.defenses.dct.quantize_blocks`.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``, dtype and device of ``x``.

    Returns:
        The refined images.

    Raises:
        TypeError: ``x`` is not a float tensor, or an unknown setting.
        ValueError: bad shape, a step <= 0, bad ``pad``, or a per-channel table whose C
            differs.

    Example:
        >>> x = torch.rand(2, 3, 30, 17)
        >>> frequency_refine(x, band_table(), pad="zero").shape
        torch.Size([2, 3, 30, 17])
    """
    return quantize_blocks(x, check_table(table), **settings)


class FrequencyRefinement(Defense):
    """Frequency Refinement defence (Liu et al., MICCAI 2020; docs/ALGORITHMS.md §2).

    Holds the quantisation table and settings;
    :func:`~segshield.defenses.dct.quantize_blocks` does the work. The table is either
    the paper's three bands (``pd``, ``ac``, ``gd`` and the band sizes) or any table
    given as ``table=``; :meth:`from_table`, :meth:`from_zigzag` and :meth:`from_file`
    are shorthands for the latter.

    Args:
        pd: priority-defence step, DC and lowest AC terms (default 30), > 0.
        ac: accuracy-compensation step (default 5), > 0.
        gd: global-defence step (default 60, the paper's demo; 80 is its class
            default), > 0.
        pd_size: PD band ``u, v < pd_size``, integer in [0, 8] (default 2).
        ac_size: AC band ``u, v < ac_size``, integer in [pd_size, 8] (default 4).
        pad: ``"edge"`` (default) or ``"zero"`` (*paper-faithful*, also computes in
            float64). Output is cropped back to the input size; the paper's code
            returns the padded size.
        clip: clip to ``[0, 1]`` (default True). Without the clip FR is idempotent.
        gradient: ``"bpda"`` (default; forward FR, backward identity) or ``"smooth"``
            (rounding replaced by ``r + (t - r)**3``).
        table: any table instead of the bands: ``(8, 8)`` for all channels or
            ``(C, 8, 8)``, one per channel, steps > 0 (tensor, array or nested lists);
            default None (the band table).
        quality: optional JPEG-style quality in [1, 100] scaling the table
            (:func:`scale_table`); default None (no scaling).
        compute_dtype: ``torch.float32``/``torch.float64`` or None (default: see
            :func:`frequency_refine`).
        space: ``"rgb"`` (default, the paper's: one table per image channel) or
            ``"ycbcr"`` (RGB images only: FR on the JFIF luma Y and chroma Cb, Cr planes,
            :func:`~segshield.defenses.ycbcr.ycbcr_refine`; the table's channels are
            Y, Cb, Cr; ``quality`` scales as libjpeg, :func:`jpeg_quality_table`).
        subsample: ``"444"`` (default) or ``"420"`` (``ycbcr`` only): chroma quantised
            on 2x2 box averages and brought back by bilinear up-sampling, as JPEG.
        luma, chroma: ``ycbcr`` only: the Y table, and the table of Cb and Cr, each
            ``"ijg"`` (the IJG standard table, JPEG's) or an ``(8, 8)`` table; each
            replaces the band table (or ``table``) in its planes. Default None (the spec
            ``fr:space=ycbcr`` without bands, ``table`` or ``file`` means ``ijg`` for both).

    Gradient policy: as FR's in RGB (``"bpda"``: identity backward; ``"smooth"``: the
    roundings replaced by ``r + (t - r)**3``; the colour conversion, box average and
    up-sampling are linear and differentiated exactly).

    Attributes:
        table: the ``(8, 8)`` or ``(C, 8, 8)`` float64 table in use (CPU; channels Y, Cb,
            Cr in ``ycbcr``); read-only (build a new instance with :meth:`from_table`).

    Shape:
        - Input: ``(B, C, H, W)`` float in [0, 1], any C/H/W; or a numpy uint8/uint16
          image ``(H, W[, C])``.
        - Output: same shape, dtype and device (numpy: same dtype, rounded then clipped).

    Raises:
        TypeError, ValueError: bad settings (named in the message), or a ``table``
            together with band settings other than the defaults.

    Example:
        >>> fr = FrequencyRefinement(pd=30, ac=5, gd=60, pad="zero")
        >>> y = fr(torch.rand(1, 3, 224, 224))
        >>> y.shape
        torch.Size([1, 3, 224, 224])
        >>> fr.spec()
        'fr:pd=30,ac=5,gd=60,pd_size=2,ac_size=4,pad=zero,clip=true,gradient=bpda'
    """

    name = "fr"
    gradients = ("bpda", "smooth")
    tile_block = 8  # blockwise: forward_numpy may cut large images at block rows

    def __init__(
        self,
        pd: float = PAPER_STEPS[0],
        ac: float = PAPER_STEPS[1],
        gd: float = PAPER_STEPS[2],
        pd_size: int = PAPER_BANDS[0],
        ac_size: int = PAPER_BANDS[1],
        pad: str = "edge",
        clip: bool = True,
        gradient: str = "bpda",
        *,
        table: Any = None,
        quality: int | None = None,
        compute_dtype: torch.dtype | None = None,
        space: str = "rgb",
        subsample: str = "444",
        luma: Any = None,
        chroma: Any = None,
    ) -> None:
        super().__init__(gradient)
        bands = {"pd": pd, "ac": ac, "gd": gd, "pd_size": pd_size, "ac_size": ac_size}
        self._bands: dict[str, Any] | None = None
        if table is None:
            table = band_table(pd, ac, gd, pd_size, ac_size)
            self._bands = {**bands, "pd_size": int(pd_size), "ac_size": int(ac_size)}
        elif bands != _BAND_DEFAULTS:
            changed = sorted(k for k, v in bands.items() if v != _BAND_DEFAULTS[k])
            raise ValueError(
                f"table: give either a table or band settings, not both (got table= and "
                f"{', '.join(changed)}); the table already fixes every step"
            )
        check_choice("pad", pad, FR_PAD_MODES)
        if not isinstance(clip, bool):
            raise TypeError(f"clip: expected True or False, got {clip!r}")
        check_choice("compute_dtype", compute_dtype, _DTYPES.values())
        table = check_table(table)
        check_choice("space", space, FR_SPACES)
        check_choice("subsample", subsample, SUBSAMPLINGS)
        if space == "ycbcr":
            table = _ycbcr_table(table, luma, chroma)
            if quality is not None:
                table = jpeg_quality_table(table, quality)
        else:
            _refuse_ycbcr_settings(space, subsample, luma, chroma)
            if quality is not None:
                table = scale_table(table, quality)
        self.space, self.subsample = space, subsample
        self._luma, self._chroma = _table_name(luma), _table_name(chroma)
        # chroma at half resolution mixes rows across strips: defend the whole image
        self.tile_block = 0 if subsample == "420" else 8
        self.table = table
        self._key = tuple(table.flatten().tolist())
        self._nested = table.tolist()  # the table as lists: ycbcr_refine traces with it
        self._shape = tuple(table.shape)
        self.pad = pad
        self.clip = clip
        self.quality = quality
        self.compute_dtype = compute_dtype

    # -- alternative constructors -----------------------------------------------------
    @classmethod
    def from_table(cls, table: Any, **settings: Any) -> FrequencyRefinement:
        """FR with any table: ``(8, 8)`` for all channels or ``(C, 8, 8)``, one per channel.

        The same as ``FrequencyRefinement(table=table, **settings)``.

        Args:
            table: steps on the 0..255 scale, > 0 (tensor, array or nested lists).
            **settings: ``pad``, ``clip``, ``gradient``, ``quality``, ``compute_dtype``,
                as in the constructor.

        Returns:
            A new :class:`FrequencyRefinement`.

        Raises:
            ValueError: bad table shape or non-positive steps.

        Example:
            >>> FrequencyRefinement.from_table(torch.full((8, 8), 16.0)).table[0, 0].item()
            16.0
        """
        return cls(table=table, **settings)

    @classmethod
    def from_zigzag(cls, steps: Any, bounds: Any = None, **kwargs: Any) -> FrequencyRefinement:
        """FR with a table given in zig-zag order or by zig-zag bands (:func:`zigzag_table`).

        Args:
            steps: 64 steps in zig-zag order, or one per band with ``bounds``.
            bounds: band starts in zig-zag index (default None).
            **kwargs: ``pad``, ``clip``, ``gradient``, ``quality``, ``compute_dtype``.

        Returns:
            A new :class:`FrequencyRefinement`.

        Example:
            >>> FrequencyRefinement.from_zigzag((30, 5, 60), (3, 10)).table[0, 2].item()
            5.0
        """
        return cls.from_table(zigzag_table(steps, bounds), **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> FrequencyRefinement:
        """Load FR from a JSON file written by :meth:`to_file`.

        The file holds ``{"format": "segshield-fr-table", "version": 1, "table": [...],
        "pad": ..., "clip": ..., "gradient": ...}``; only ``table`` is required.

        Args:
            path: JSON file.
            **overrides: ``pad``, ``clip``, ``gradient``, ``quality``, ``compute_dtype``
                taking precedence over the file.

        Returns:
            A new :class:`FrequencyRefinement`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not valid JSON, wrong format, or a bad table.

        Example:
            >>> import tempfile, os
            >>> p = os.path.join(tempfile.mkdtemp(), "t.json")
            >>> FrequencyRefinement(gd=80).to_file(p)
            >>> FrequencyRefinement.from_file(p).table[7, 7].item()
            80.0
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such FR table file; write one with to_file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a JSON FR table file ({exc})") from exc
        if not isinstance(data, dict) or "table" not in data:
            raise ValueError(
                f"{path}: expected a JSON object with a 'table' entry (8x8 or Cx8x8 steps)"
            )
        if data.get("format", _FILE_FORMAT) != _FILE_FORMAT:
            raise ValueError(
                f"{path}: expected format {_FILE_FORMAT!r}, got {data.get('format')!r}"
            )
        keys = ("pad", "clip", "gradient", "quality", "space", "subsample")
        kwargs = {k: data[k] for k in keys if k in data}
        if "compute_dtype" in data:
            kwargs["compute_dtype"] = _parse_dtype(data["compute_dtype"])
        kwargs.update(overrides)
        return cls.from_table(data["table"], **kwargs)

    def to_file(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write the table and settings as JSON (atomically); :meth:`from_file` reads it.

        Args:
            path: destination ``.json`` file.
            extra: more JSON entries stored after the settings (e.g. the tuner's report);
                :meth:`from_file` ignores them. Default None.

        Raises:
            ValueError: an ``extra`` entry named like one of the settings.
        """
        from segshield.utils.imageio import atomic_write_bytes

        data = {
            "format": _FILE_FORMAT,
            "version": 1,
            "table": self.table.tolist(),
            "pad": self.pad,
            "clip": self.clip,
            "gradient": self.gradient,
            "compute_dtype": _dtype_name(self.compute_dtype),
        }
        if self.space != "rgb":  # an RGB file is as before: rgb is the default
            data.update(space=self.space, subsample=self.subsample)
        clash = sorted(set(extra or {}) & set(data))
        if clash:
            raise ValueError(f"extra: {clash} would replace the FR settings; rename them")
        data.update(extra or {})
        atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))

    # -- Defense interface ------------------------------------------------------------
    def transform(self, x: torch.Tensor, *, traceable: bool = False) -> torch.Tensor:
        """FR of checked images; ``traceable=True`` builds it for graph export.

        See :func:`~segshield.defenses.dct.quantize_blocks` (``traceable``): the same
        numbers up to float summation order, without size-dependent Python code.
        """
        # settings and table were validated in __init__; skip re-checking per call
        smooth = self.gradient == "smooth"
        if self.space == "ycbcr":
            return ycbcr_refine(
                x,
                self._nested,
                subsample=self.subsample,
                pad=self.pad,
                clip=self.clip,
                smooth=smooth,
                compute_dtype=self.compute_dtype,
                traceable=traceable,
            )
        return _quantize(
            x,
            self._key,
            self._shape,
            self.pad,
            self.clip,
            smooth,
            self.compute_dtype,
            255.0,
            traceable,
        )

    def spec_params(self) -> dict[str, Any]:
        """Band form when built from bands, else ``table=s0/s1/...`` (row-major, C*64);
        ``space``, ``subsample``, ``luma``, ``chroma`` first in YCbCr."""
        params: dict[str, Any] = {}
        if self.space != "rgb":
            params.update(space=self.space, subsample=self.subsample)
            named = {k: v for k, v in (("luma", self._luma), ("chroma", self._chroma)) if v}
            if len(named) == 2 or (named and self._bands is not None):
                # the named tables (and the bands under a lone one), scaled by quality
                params.update(named)
                if len(named) == 1:
                    params.update(self._table_params())
                elif self.quality is not None:
                    params["quality"] = self.quality
                return self._tail(params)
            if named:  # a lone named table over table=...: the whole scaled table
                return self._tail({**params, "table": _table_string(self.table)})
        return self._tail({**params, **self._table_params()})

    def _tail(self, params: dict[str, Any]) -> dict[str, Any]:
        params.update(pad=self.pad, clip=self.clip, gradient=self.gradient)
        if self.compute_dtype is not None:
            params["dtype"] = _dtype_name(self.compute_dtype)
        return params

    def _table_params(self) -> dict[str, Any]:
        """The table as bands (and quality) when built from bands, else ``table=...``."""
        if self._bands is not None:
            params: dict[str, Any] = dict(self._bands)
            if self.quality is not None:
                params["quality"] = self.quality
        else:
            params = {"table": _table_string(self.table)}
        return params


def _table_string(table: torch.Tensor) -> str:
    return "/".join(f"{v:g}" for v in table.flatten().tolist())


def _table_name(table: Any) -> str | None:
    """How a ``luma``/``chroma`` argument is written in a spec: ``ijg`` or its steps."""
    if table is None or isinstance(table, str):
        return table
    return _table_string(check_table(table))


def _refuse_ycbcr_settings(space: str, subsample: str, luma: Any, chroma: Any) -> None:
    """Settings of the YCbCr space given with another space: a clear error, not ignored."""
    given = [k for k, v in (("luma", luma), ("chroma", chroma)) if v is not None]
    given += ["subsample"] if subsample != "444" else []
    if given:
        raise ValueError(
            f"{', '.join(given)}: only with space='ycbcr' (JPEG's luma and chroma planes), "
            f"got space={space!r}; add space=ycbcr or drop {', '.join(given)}"
        )


def _plane_table(name: str, value: Any) -> torch.Tensor:
    """A ``luma``/``chroma`` argument as an ``(8, 8)`` table (``"ijg"``: the standard one)."""
    kind = "luma" if name == "luma" else "chroma"
    if isinstance(value, str):
        if value == "ijg":
            return ijg_table(kind)
        try:
            value = parse_table_string(value)
        except ValueError:
            raise ValueError(
                f"{name}: expected 'ijg' (the standard table) or 64 steps s0/s1/.../s63, "
                f"got {value[:40]!r}"
            ) from None
    t = check_table(value)
    if t.shape != (8, 8):
        raise ValueError(f"{name}: expected 'ijg' or one (8, 8) table, got shape {tuple(t.shape)}")
    return t


def _ycbcr_table(table: torch.Tensor, luma: Any, chroma: Any) -> torch.Tensor:
    """The (Y, Cb, Cr) table: ``table`` with its Y or Cb, Cr planes replaced."""
    if table.ndim == 3 and table.shape[0] != 3:
        raise ValueError(
            f"table: expected (8, 8) or (3, 8, 8) (Y, Cb, Cr) steps in space='ycbcr', got "
            f"{tuple(table.shape)}"
        )
    if luma is None and chroma is None:
        return table
    if table.ndim == 3:
        raise ValueError("table: give a (3, 8, 8) table or luma=/chroma=, not both")
    out = table.expand(3, 8, 8).clone()
    if luma is not None:
        out[0] = _plane_table("luma", luma)
    if chroma is not None:
        out[1:] = _plane_table("chroma", chroma)
    return out


def _dtype_name(dtype: torch.dtype | None) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]


def _parse_dtype(name: str) -> torch.dtype | None:
    check_choice("dtype", name, _DTYPES)
    return _DTYPES[name]


def parse_table_string(text: str) -> torch.Tensor:
    """Parse ``"s0/s1/.../s63"`` (or C*64 values) into an ``(8, 8)``/``(C, 8, 8)`` table.

    Raises:
        ValueError: not numbers, or a count that is not a multiple of 64.
    """
    try:
        vals = [float(v) for v in text.split("/")]
    except ValueError as exc:
        raise ValueError(f"table: expected numbers separated by '/', got {text[:40]!r}") from exc
    if len(vals) % 64 or not vals:
        raise ValueError(
            f"table: expected 64 steps (or 64 per channel) separated by '/', got {len(vals)}"
        )
    t = torch.tensor(vals, dtype=torch.float64)
    return t.reshape(8, 8) if len(vals) == 64 else t.reshape(len(vals) // 64, 8, 8)
