"""``Defense``: the common interface of every input-transformation defence.

Reference: ARCHITECTURE.md "Defences"; gradient policies from docs/ALGORITHMS.md §2 and Athalye et
al., ICML 2018. A defence maps ``(B, C, H, W)`` float images in ``[0, 1]`` to images of
the same shape, dtype and device; it also accepts one uint8/uint16 numpy image.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from segshield._checks import check_choice, check_images
from segshield._spec import format_value
from segshield.defenses.rounding import straight_through

__all__ = ["Defense"]

#: :meth:`Defense.forward_numpy` keeps a strip under about this many pixels.
_TILE_PIXELS = 1 << 21


class Defense(torch.nn.Module):
    """Base class: an input transformation applied before a segmentation model.

    Subclasses set the class attributes and implement :meth:`transform` (a pure
    function of the images, differentiable where ``gradient`` is ``"exact"`` or
    ``"smooth"``); :meth:`spec_params` lists the settings named in ``spec_keys`` (a
    subclass whose spec depends on how it was built overrides it).

    Attributes:
        name: registry name (``get_defense(name)`` builds one).
        gradients: gradient policies this defence offers (first = default).
        randomized: whether the output is random (EOT needed); always False here.
        spec_keys: spec-string key -> attribute holding that setting, in spec order.
        gradient: this instance's policy: ``"exact"`` (differentiable), ``"bpda"``
            (forward = defence, backward = identity) or ``"smooth"`` (surrogate).
        tile_block: :meth:`forward_numpy` may cut large images into strips of multiples
            of this many rows (8 for the block-DCT defences, 1 for pixelwise and local
            ones, whose :meth:`tile_halo` gives the rows read beyond a strip); 0: never.

    Shape:
        - Input: ``(B, C, H, W)`` float in ``[0, 1]``, or a numpy ``(H, W)`` /
          ``(H, W, C)`` uint8/uint16 image.
        - Output: same shape, dtype and device (numpy in, numpy of the same dtype out,
          rounded then clipped).

    Example:
        >>> from segshield.defenses import Identity
        >>> Identity()(torch.zeros(1, 1, 4, 4)).shape
        torch.Size([1, 1, 4, 4])
    """

    name: ClassVar[str] = ""
    gradients: ClassVar[tuple[str, ...]] = ("bpda",)
    randomized: ClassVar[bool] = False
    spec_keys: ClassVar[dict[str, str]] = {}
    #: default policy at class level (``gradients[0]``); instances may choose another.
    gradient: str = "bpda"
    #: :meth:`forward_numpy` cuts large images into strips of multiples of this many
    #: rows: the block of a blockwise defence, 1 for a pixelwise or local one; 0 for a
    #: defence that must see the whole image.
    tile_block: ClassVar[int] = 0

    def tile_halo(self) -> int:
        """Rows a strip must read beyond its own on either side (a filter's radius)."""
        return 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.gradient = cls.gradients[0]

    def __init__(self, gradient: str | None = None) -> None:
        super().__init__()
        gradient = self.gradients[0] if gradient is None else gradient
        check_choice("gradient", gradient, self.gradients)
        self.gradient = gradient

    # -- to implement -----------------------------------------------------------------
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The defence itself on checked images ``(B, C, H, W)``; same shape/dtype/device."""
        raise NotImplementedError

    def spec_params(self) -> dict[str, Any]:
        """Registry parameters (spec-string keys and values) that rebuild this instance.

        Returns:
            The ``spec_keys`` settings, then ``gradient``.
        """
        params = {key: getattr(self, attr) for key, attr in self.spec_keys.items()}
        params["gradient"] = self.gradient
        return params

    # -- shared behaviour -------------------------------------------------------------
    def spec(self) -> str:
        """The registry string that rebuilds this instance with :func:`get_defense`.

        Returns:
            ``"name"`` or ``"name:key=value,..."``.

        Example:
            >>> from segshield.defenses import BitDepth
            >>> BitDepth(4).spec()
            'bitdepth:bits=4,gradient=bpda'
        """
        params = self.spec_params()
        if not params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={format_value(v)}" for k, v in params.items())

    def extra_repr(self) -> str:
        return self.spec()

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Apply the defence with this instance's gradient policy.

        Args:
            x: ``(B, C, H, W)`` float tensor in ``[0, 1]``, or a numpy ``(H, W)`` or
                ``(H, W, C)`` uint8/uint16 image.

        Returns:
            The defended images, same shape, dtype and device (or numpy dtype).

        Raises:
            TypeError: ``x`` is neither a float tensor nor a uint8/uint16 array.
            ValueError: ``x`` has the wrong number of dimensions or is empty.
        """
        if isinstance(x, np.ndarray):
            return self.forward_numpy(x)
        check_images(x, "x")
        if self.gradient == "bpda":
            with torch.no_grad():
                y = self.transform(x.detach())
            return straight_through(x, y)
        return self.transform(x)

    def forward_numpy(
        self,
        arr: np.ndarray,
        device: str | torch.device | None = None,
        *,
        tile_rows: int | None = None,
    ) -> np.ndarray:
        """Defend one uint8/uint16 numpy image (what :meth:`forward` does with numpy input).

        Large images are defended in strips of whole rows, so that memory follows the
        strip, not the image. A blockwise defence (``tile_block`` > 0, e.g. 8 for FR)
        cuts strips at multiples of its block: each block sees exactly the pixels, and
        the last strip exactly the bottom padding, of the whole image, so the output is
        bit for bit the untiled one. A local filter also reads ``tile_halo()`` rows on
        either side of its strip and keeps the strip's own rows. A defence with
        ``tile_block == 0`` (JPEG) runs on the whole image.

        Args:
            arr: ``(H, W)`` or ``(H, W, C)`` uint8 or uint16 image.
            device: where the defence computes (its tensors must be there). Default CPU.
            tile_rows: rows per strip, a positive multiple of ``tile_block``; default
                None: as many as keep a strip under about 2**21 pixels.

        Returns:
            The defended image, same shape and dtype (rounded, then clipped).

        Raises:
            TypeError: ``arr`` is not uint8/uint16.
            ValueError: ``arr`` is empty or not 2-D/3-D, or a bad ``tile_rows``.

        Example:
            >>> from segshield.defenses import Identity
            >>> Identity().forward_numpy(np.full((2, 2), 7, np.uint8)).tolist()
            [[7, 7], [7, 7]]
        """
        if arr.dtype not in (np.uint8, np.uint16):
            raise TypeError(
                f"x: expected a uint8 or uint16 numpy image, got dtype {arr.dtype}; "
                "pass float images as a (B, C, H, W) torch tensor in [0, 1]"
            )
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise ValueError(
                f"x: expected a numpy image (H, W) or (H, W, C), got shape {arr.shape}"
            )
        scale = 255.0 if arr.dtype == np.uint8 else 65535.0
        hwc = arr[:, :, None] if arr.ndim == 2 else arr
        out = np.empty(hwc.shape, arr.dtype)
        for top, bottom, lo, hi in self._strips(*hwc.shape[:2], tile_rows):
            # float64 keeps k/scale exact enough that FR's paper-faithful mode sees integers.
            t = torch.from_numpy(np.asarray(hwc[lo:hi], dtype=np.float64) / scale).to(device)
            with torch.no_grad():
                y = self.transform(t.permute(2, 0, 1).unsqueeze(0))
            y = y[0, :, top - lo : bottom - lo].permute(1, 2, 0).cpu().numpy()
            out[top:bottom] = np.clip(np.round(y * scale), 0, scale).astype(arr.dtype)
        return out[:, :, 0] if arr.ndim == 2 else out

    def _strips(self, h: int, w: int, tile_rows: int | None) -> list[tuple[int, int, int, int]]:
        """``(top, bottom, lo, hi)``: strip rows ``[top, bottom)`` computed from ``[lo, hi)``."""
        block = self.tile_block
        if tile_rows is not None and (
            isinstance(tile_rows, bool)
            or not isinstance(tile_rows, int)
            or block == 0
            or tile_rows < 1
            or tile_rows % block
        ):
            why = "cannot be tiled" if block == 0 else f"tiles by multiples of {block} rows"
            raise ValueError(f"tile_rows: {self.name} {why}, got {tile_rows!r}")
        if block == 0:
            return [(0, h, 0, h)]
        rows = tile_rows or max(block, _TILE_PIXELS // w // block * block)
        halo = self.tile_halo()
        return [
            (top, min(h, top + rows), max(0, top - halo), min(h, top + rows + halo))
            for top in range(0, h, rows)
        ]
