"""Frequency Refinement (FR): block-DCT quantisation with a segmentation-oriented table.

Reference: Liu et al., "Defending Deep Learning-based Biomedical Image Segmentation
from Adversarial Attacks: A Low-cost Frequency Refinement Approach", MICCAI 2020
(SPEC §2). Per channel, on the 0..255 scale: pad to multiples of 8, 8x8 block DCT
``C = D B Dᵀ``, ``Ĉ = round(C / Q) · Q`` (half to even), inverse DCT, crop back, clip
to [0, 255], divide by 255.

Implementation: the block DCT is separable and is computed in the image layout, with
no gather of blocks: ``D`` multiplies stacks of 8 (or 16: two blocks) rows from the left
and ``Dᵀ`` runs of 8 (or 16) columns from the right, as batched matrix products. The
coefficients then lie at ``(8i + u, 8j + v)``, so dividing by ``Q``, rounding and
multiplying by ``Q`` are elementwise products with the table tiled along a row of
blocks; the inverse DCT is the same pair of products with the transposed matrices. The
value scale is folded into the matrices, which are cached per table, dtype, device and
image size.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch

from segshield._checks import check_choice, check_images
from segshield.defenses.base import Defense
from segshield.defenses.dct import _dct_matrix_cached, _device, _pad_unchecked
from segshield.defenses.rounding import smooth_round
from segshield.defenses.tables import band_table, check_table, scale_table, zigzag_table

__all__ = [
    "FrequencyRefinement",
    "frequency_refine",
    "band_table",
    "scale_table",
    "zigzag_table",
    "FR_PAD_MODES",
]

#: Padding modes FR accepts (``"crop"`` would change the image size; crop the images
#: yourself with ``pad_to_multiple(x, 8, "crop")`` before FR if you want it).
FR_PAD_MODES = ("edge", "zero")
_DTYPES = {"auto": None, "float32": torch.float32, "float64": torch.float64}
_FILE_FORMAT = "segshield-fr-table"


@functools.lru_cache(maxsize=64)
def _fr_operands(
    table_key: tuple[float, ...],
    channels: int,
    scale: float,
    dtype: torch.dtype,
    device: torch.device,
    height: int,
    width: int,
) -> tuple[torch.Tensor, ...]:
    """Transform matrices and quantiser tiles for padded images of ``height x width``.

    Returns ``(left, right, left_inv, right_inv, inv_tile, tile)``: ``left @ rows`` and
    ``cols @ right`` give ``scale * D B Dᵀ`` for every block when the image is viewed as
    stacks of ``r`` rows (``r`` = 16, two blocks at a time, when the size allows, else
    8), and the ``_inv`` pair gives ``Dᵀ C D / scale``. ``tile[c, u, 8j + v] = Q[c, u, v]``
    lays the table out like a row of blocks, so quantising is an elementwise product
    on the coefficient image. Built in float64, then cast.
    """
    d = _dct_matrix_cached(8, torch.float64, torch.device("cpu"))
    rh, rw = (16 if height % 16 == 0 else 8), (16 if width % 16 == 0 else 8)

    def diag(m: torch.Tensor, r: int) -> torch.Tensor:
        return torch.block_diag(*([m] * (r // 8)))

    q = torch.tensor(table_key, dtype=torch.float64).reshape(channels, 8, 8)
    tile = q.repeat(1, 1, width // 8)
    if channels == 1:
        tile = tile[0]
    ops = (diag(d * scale, rh), diag(d.T, rw), diag(d.T, rh), diag(d / scale, rw), 1 / tile, tile)
    return tuple(t.to(dtype=dtype, device=device).contiguous() for t in ops)


def _compute_dtype(x: torch.Tensor, pad: str, compute_dtype: torch.dtype | None) -> torch.dtype:
    if compute_dtype is not None:
        return compute_dtype
    if pad == "zero" or x.dtype == torch.float64:
        return torch.float64
    return torch.float32


def frequency_refine(
    x: torch.Tensor,
    table: torch.Tensor,
    *,
    pad: str = "edge",
    clip: bool = True,
    smooth: bool = False,
    compute_dtype: torch.dtype | None = None,
    scale: float = 255.0,
) -> torch.Tensor:
    """Frequency Refinement of a batch of images (the pure function behind the module).

    Reference: Liu et al., MICCAI 2020 (SPEC §2 steps 1-5).

    Args:
        x: images ``(B, C, H, W)`` in ``[0, 1]`` (values ``v`` stand for ``v * scale``
            grey levels), any C, H, W.
        table: steps ``(8, 8)`` or ``(C, 8, 8)`` on the 0..255 scale, > 0.
        pad: ``"edge"`` (default) or ``"zero"`` (*paper-faithful*); the output is
            always cropped back to ``H x W`` (the paper's code returns the padded size).
        clip: clip the result to ``[0, 1]`` (default True). Without it FR is idempotent,
            ``FR(FR(x)) == FR(x)`` up to float error, when H and W are multiples of 8 (at
            a padded border the second pass sees different padding).
        smooth: replace rounding by the differentiable surrogate
            ``r + (t - r)**3`` (default False: exact rounding, half to even).
        compute_dtype: dtype of the arithmetic; default None means float64 for
            ``pad="zero"`` (paper-faithful, matches a float64 reference except at exact
            rounding ties) or float64 input, float32 otherwise.
        scale: grey levels of value 1.0 (default 255.0; the table is on this scale).

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``, dtype and device of ``x``.

    Returns:
        The refined images.

    Raises:
        TypeError: ``x`` is not a float tensor.
        ValueError: bad shape, bad ``pad``, or a per-channel table whose C differs.

    Example:
        >>> x = torch.rand(2, 3, 30, 17)
        >>> frequency_refine(x, band_table()).shape
        torch.Size([2, 3, 30, 17])
    """
    check_images(x, "x")
    check_choice("pad", pad, FR_PAD_MODES)
    t = check_table(table)
    channels = t.shape[0] if t.ndim == 3 else 1
    return _refine(
        x, tuple(t.flatten().tolist()), channels, pad, clip, smooth, compute_dtype, float(scale)
    )


def _refine(
    x: torch.Tensor,
    table_key: tuple[float, ...],
    channels: int,
    pad: str,
    clip: bool,
    smooth: bool,
    compute_dtype: torch.dtype | None,
    scale: float,
) -> torch.Tensor:
    """:func:`frequency_refine` on checked arguments (the table as a flat tuple)."""
    b, c = x.shape[:2]
    if channels != 1 and channels != c:
        raise ValueError(
            f"table: expected one table per channel ({c}), got {channels}; "
            "pass an (8, 8) table to use the same steps for every channel"
        )
    dtype = _compute_dtype(x, pad, compute_dtype)
    xp, (h, w) = _pad_unchecked(x.to(dtype), 8, pad)
    hp, wp = xp.shape[-2:]
    left, right, left_inv, right_inv, inv_tile, tile = _fr_operands(
        table_key, channels, scale, dtype, _device(x.device), hp, wp
    )
    if channels != 1:
        inv_tile, tile = inv_tile.unsqueeze(1), tile.unsqueeze(1)  # (C, 1, 8, W)
    rh, rw = left.shape[0], right.shape[0]
    # Separable block DCT in the image layout: rows within blocks, then columns.
    coeff = torch.matmul(left, xp.reshape(b, c, hp // rh, rh, wp))
    coeff = torch.matmul(coeff.reshape(b, c, hp, wp // rw, rw), right)
    coeff = coeff.reshape(b, c, hp // 8, 8, wp)  # [.., i, u, 8j + v]: block (i, j), freq (u, v)
    tracked = torch.is_grad_enabled() and coeff.requires_grad
    if smooth:
        levels = smooth_round(coeff * inv_tile)
    elif tracked:
        levels = torch.round(coeff * inv_tile)
    else:
        levels = coeff.mul_(inv_tile).round_()
    levels = levels * tile if tracked or smooth else levels.mul_(tile)
    y = torch.matmul(left_inv, levels.reshape(b, c, hp // rh, rh, wp))
    y = torch.matmul(y.reshape(b, c, hp, wp // rw, rw), right_inv).reshape(b, c, hp, wp)
    if hp != h or wp != w:
        y = y[..., :h, :w]
    if clip:
        y = y.clamp(0.0, 1.0) if tracked else y.clamp_(0.0, 1.0)
    return y.to(x.dtype).contiguous()


class FrequencyRefinement(Defense):
    """Frequency Refinement defence (Liu et al., MICCAI 2020; SPEC §2).

    Holds the quantisation table and settings; :func:`frequency_refine` does the work.

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
        quality: optional JPEG-style quality in [1, 100] scaling the table
            (:func:`scale_table`); default None (no scaling).
        compute_dtype: ``torch.float32``/``torch.float64`` or None (default: see
            :func:`frequency_refine`).

    Attributes:
        table: the ``(8, 8)`` or ``(C, 8, 8)`` float64 table in use (CPU); read-only
            (build a new instance with :meth:`from_table` to change it).

    Shape:
        - Input: ``(B, C, H, W)`` float in [0, 1], any C/H/W; or a numpy uint8/uint16
          image ``(H, W[, C])``.
        - Output: same shape, dtype and device (numpy: same dtype, rounded then clipped).

    Raises:
        TypeError, ValueError: bad settings (named in the message).

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

    def __init__(
        self,
        pd: float = 30,
        ac: float = 5,
        gd: float = 60,
        pd_size: int = 2,
        ac_size: int = 4,
        pad: str = "edge",
        clip: bool = True,
        gradient: str = "bpda",
        *,
        quality: int | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(gradient)
        table = band_table(pd, ac, gd, pd_size, ac_size)
        self._setup(table, pad, clip, quality, compute_dtype)
        self._bands: dict[str, Any] | None = {
            "pd": pd,
            "ac": ac,
            "gd": gd,
            "pd_size": int(pd_size),
            "ac_size": int(ac_size),
        }

    def _setup(
        self,
        table: torch.Tensor,
        pad: str,
        clip: bool,
        quality: int | None,
        compute_dtype: torch.dtype | None,
    ) -> None:
        check_choice("pad", pad, FR_PAD_MODES)
        if not isinstance(clip, bool):
            raise TypeError(f"clip: expected True or False, got {clip!r}")
        check_choice("compute_dtype", compute_dtype, _DTYPES.values())
        table = check_table(table)
        if quality is not None:
            table = scale_table(table, quality)
        self.table = table
        self._key = tuple(table.flatten().tolist())
        self._channels = table.shape[0] if table.ndim == 3 else 1
        self.pad = pad
        self.clip = clip
        self.quality = quality
        self.compute_dtype = compute_dtype

    # -- alternative constructors -----------------------------------------------------
    @classmethod
    def from_table(
        cls,
        table: Any,
        *,
        pad: str = "edge",
        clip: bool = True,
        gradient: str = "bpda",
        quality: int | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> FrequencyRefinement:
        """FR with any table: ``(8, 8)`` for all channels or ``(C, 8, 8)``, one per channel.

        Args:
            table: steps on the 0..255 scale, > 0 (tensor, array or nested lists).
            pad, clip, gradient, quality, compute_dtype: as in the constructor.

        Returns:
            A new :class:`FrequencyRefinement`.

        Raises:
            ValueError: bad table shape or non-positive steps.

        Example:
            >>> FrequencyRefinement.from_table(torch.full((8, 8), 16.0)).table[0, 0].item()
            16.0
        """
        self = cls.__new__(cls)
        Defense.__init__(self, gradient)
        self._setup(check_table(table), pad, clip, quality, compute_dtype)
        self._bands = None
        return self

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
        kwargs = {k: data[k] for k in ("pad", "clip", "gradient", "quality") if k in data}
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
        clash = sorted(set(extra or {}) & set(data))
        if clash:
            raise ValueError(f"extra: {clash} would replace the FR settings; rename them")
        data.update(extra or {})
        atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))

    # -- Defense interface ------------------------------------------------------------
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        # settings and table were validated in __init__; skip re-checking per call
        smooth = self.gradient == "smooth"
        return _refine(
            x, self._key, self._channels, self.pad, self.clip, smooth, self.compute_dtype, 255.0
        )

    def spec_params(self) -> dict[str, Any]:
        """Band form when built from bands, else ``table=s0/s1/...`` (row-major, C*64)."""
        if self._bands is not None:
            params: dict[str, Any] = dict(self._bands)
            if self.quality is not None:
                params["quality"] = self.quality
        else:
            params = {"table": "/".join(f"{v:g}" for v in self.table.flatten().tolist())}
        params.update(pad=self.pad, clip=self.clip, gradient=self.gradient)
        if self.compute_dtype is not None:
            params["dtype"] = _dtype_name(self.compute_dtype)
        return params


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
