"""``SegDataset``: image/mask pairs, read lazily, resized by one policy (docs/ALGORITHMS.md §1).

Every loader (phantoms and the real-data layouts) produces a list of :class:`Sample`
(a name, an image file or array, one or more mask files or an array) and a decoding
function that turns the raw mask file(s) into class ids. ``SegDataset`` does the rest
the same way for all of them: read on ``__getitem__`` (optionally cached in memory
after resizing), drop an alpha channel, apply the resize policy, check the class ids.

Resize policies (``resize=``):

- ``"resize"``: image bilinear (Pillow, anti-aliased when shrinking), mask
  nearest-neighbour, straight to ``size``; the aspect ratio is not kept.
- ``"pad"``: first pad to a square, centred, with black (0) image pixels and
  background (class 0) mask pixels, then resize as above. Zero padding matches the
  black surround of dermoscopy and fundus photographs; class 0 (not the ignore label
  255) keeps losses and metrics that do not handle ``255`` correct.

With ``size=None`` the native size is kept (``"pad"`` still pads to a square).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from segshield._checks import check_choice
from segshield.choices import RESIZE_POLICIES
from segshield.utils.imageio import ImageReadError, read_image, read_mask

__all__ = ["Sample", "SegDataset", "RESIZE_POLICIES", "resize_pair"]

log = logging.getLogger(__name__)

# raw mask arrays (one per mask file, or the stored array) -> (H, W) int64 class ids
MaskDecoder = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Sample:
    """One image/mask pair before reading.

    Attributes:
        name: unique name within the data set (the image stem for files).
        image: image file, or an ``(H, W, C)`` uint8/uint16 array.
        masks: mask file(s) handed to the decoder in order, or an ``(H, W)`` array of
            class ids.
        meta: per-sample labels copied into every item (e.g. ``cdr``, ``malignant``).
        size: native ``(H, W)`` when known from the file header, else ``None``.
    """

    name: str
    image: Path | np.ndarray
    masks: tuple[Path, ...] | np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)
    size: tuple[int, int] | None = None


def _identity(masks: list[np.ndarray]) -> np.ndarray:
    return masks[0].astype(np.int64)


def _resize_image(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    if img.dtype == np.uint8 and img.shape[2] in (1, 3):
        im = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
        out = np.asarray(im.resize((w, h), Image.Resampling.BILINEAR))
        return out.reshape(h, w, img.shape[2])
    # uint16 (or unusual channel counts): per channel in float, then round and clip
    top = 65535.0 if img.dtype == np.uint16 else 255.0
    chans = [
        np.asarray(
            Image.fromarray(img[..., c].astype(np.float32)).resize(
                (w, h), Image.Resampling.BILINEAR
            )
        )
        for c in range(img.shape[2])
    ]
    return np.clip(np.rint(np.stack(chans, -1)), 0, top).astype(img.dtype)


def _resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if mask.shape == (h, w):
        return mask
    im = Image.fromarray(mask.astype(np.uint8))
    return np.asarray(im.resize((w, h), Image.Resampling.NEAREST)).astype(np.int64)


def resize_pair(
    image: np.ndarray,
    mask: np.ndarray,
    size: tuple[int, int] | None,
    resize: str = "resize",
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a resize policy to one ``(H, W, C)`` image and its ``(H, W)`` mask.

    Args:
        image: uint8 or uint16 array ``(H, W, C)``.
        mask: integer class ids ``(H, W)`` in ``0..255`` (255 = ignore).
        size: target ``(H, W)``, or ``None`` to keep the (padded) native size.
        resize: ``"resize"`` or ``"pad"`` (see the module docstring). Default ``"resize"``.

    Returns:
        ``(image, mask)`` with the image dtype kept and the mask as int64.

    Raises:
        ValueError: unknown policy, or image and mask sizes that differ.

    Example:
        >>> img = np.zeros((10, 20, 3), np.uint8); m = np.ones((10, 20), np.int64)
        >>> a, b = resize_pair(img, m, (8, 8), "pad")
        >>> a.shape, int(b[0, 0]), int(b[4, 4])
        ((8, 8, 3), 0, 1)
    """
    check_choice("resize", resize, RESIZE_POLICIES)
    if image.shape[:2] != mask.shape:
        raise ValueError(
            f"image and mask sizes differ: image {image.shape[:2]}, mask {mask.shape}; "
            "the pair does not belong together or the mask was resized"
        )
    if resize == "pad":
        h, w = mask.shape
        s = max(h, w)
        top, left = (s - h) // 2, (s - w) // 2
        if (h, w) != (s, s):
            img2 = np.zeros((s, s, image.shape[2]), image.dtype)
            img2[top : top + h, left : left + w] = image
            m2 = np.zeros((s, s), np.int64)
            m2[top : top + h, left : left + w] = mask
            image, mask = img2, m2
    if size is not None:
        image = _resize_image(image, size)
        mask = _resize_mask(mask, size)
    return image, mask.astype(np.int64)


class SegDataset(torch.utils.data.Dataset):
    """Segmentation data set: items ``{"image", "mask", "name", **meta}``.

    Built by :func:`segshield.data.load_dataset`; use that rather than this class.

    Args:
        samples: the pairs, in order.
        kind: loader name (``"isic"``, ``"phantom-derm"``, ...).
        class_names: one name per mask class (``num_classes = len(class_names)``, >= 2).
        regions: named groups of classes, e.g. ``{"disc": (1, 2), "cup": (2,)}``.
        decode: turns the raw mask arrays of a sample into class ids; default: the
            first mask as is.
        size: target ``(H, W)`` or ``None`` (native size).
        resize: ``"resize"`` or ``"pad"``. Default ``"resize"``.
        cache: keep each item in memory (uint8 after resizing) after its first read.
            Default ``False``.
        problems: messages about pairs skipped while indexing.

    Shape:
        - item ``"image"``: ``(C, H, W)`` float32 in ``[0, 1]`` (C = 1 or 3; alpha dropped).
        - item ``"mask"``: ``(H, W)`` int64 class ids, 255 = ignore.

    Raises:
        ValueError: fewer than two classes or an unknown resize policy.

    Example:
        >>> s = Sample("a", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.int64))
        >>> ds = SegDataset([s], kind="demo", class_names=("bg", "fg"), regions={"fg": (1,)})
        >>> ds[0]["image"].shape, ds.num_classes
        (torch.Size([3, 4, 4]), 2)
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        kind: str,
        class_names: Sequence[str],
        regions: Mapping[str, tuple[int, ...]],
        decode: MaskDecoder | None = None,
        size: tuple[int, int] | None = None,
        resize: str = "resize",
        cache: bool = False,
        problems: Sequence[str] = (),
    ) -> None:
        check_choice("resize", resize, RESIZE_POLICIES)
        if len(class_names) < 2:
            raise ValueError(
                f"class_names: expected at least 2 classes (background + one), got {class_names!r}"
            )
        self.samples = list(samples)
        self.kind = kind
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.regions = {k: tuple(v) for k, v in regions.items()}
        self.decode = decode or _identity
        self.size = size
        self.resize = resize
        self.cache = cache
        self.problems = list(problems)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def names(self) -> list[str]:
        """Sample names in order."""
        return [s.name for s in self.samples]

    def read_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read, decode and resize sample ``index`` as numpy arrays (no cache).

        Returns:
            ``(image (H, W, C) uint8/uint16, mask (H, W) int64)``.

        Raises:
            ImageReadError: a file is unreadable (the message names it).
            ValueError: image and mask sizes differ, or class ids outside
                ``0..num_classes-1`` and 255 (the message names the sample).
        """
        s = self.samples[index]
        img = s.image if isinstance(s.image, np.ndarray) else read_image(s.image)
        if img.shape[2] == 4:
            img = img[..., :3]
        if isinstance(s.masks, np.ndarray):
            mask = s.masks.astype(np.int64)
        else:
            mask = self.decode([read_mask(p) for p in s.masks])
        bad = ((mask < 0) | (mask >= self.num_classes)) & (mask != 255)
        if bad.any():
            vals = sorted(np.unique(mask[bad]).tolist())[:8]
            raise ValueError(
                f"{self._where(s)}: mask values {vals} are not class ids of {self.kind} "
                f"(expected 0..{self.num_classes - 1} or 255 = ignore); check the mask "
                "encoding or the data-set kind"
            )
        try:
            return resize_pair(img, mask, self.size, self.resize)
        except ValueError as exc:
            raise ValueError(f"{self._where(s)}: {exc}") from exc

    def _where(self, s: Sample) -> str:
        if isinstance(s.image, np.ndarray):
            return f"{self.kind} sample {s.name!r}"
        masks = ", ".join(str(p) for p in s.masks)  # type: ignore[union-attr]
        return f"{s.image} (mask {masks})"

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} items")
        if self.cache and index in self._cache:
            img, mask = self._cache[index]
        else:
            img, mask = self.read_arrays(index)
            if self.cache:
                self._cache[index] = (img, mask.astype(np.uint8))
        scale = 65535.0 if img.dtype == np.uint16 else 255.0
        image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / scale
        item: dict[str, Any] = {
            "image": image,
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "name": self.samples[index].name,
        }
        item.update(self.samples[index].meta)
        return item

    def scan(self) -> dict[str, Any]:
        """Read every item once and summarise (used by ``segshield data check``).

        Unreadable or inconsistent items are reported, not raised.

        Returns:
            dict with ``pairs`` (int), ``sizes`` (Counter of native ``(H, W)``),
            ``channels`` (Counter), ``class_fractions`` (list of float per class, 255
            excluded), ``problems`` (indexing problems + read errors) and ``ok`` (int).
        """
        from segshield.utils.progress import progress

        sizes: Counter = Counter()
        channels: Counter = Counter()
        counts = np.zeros(self.num_classes, np.int64)
        problems = list(self.problems)
        ok = 0
        for i in progress(range(len(self)), desc=f"scan {self.kind}", total=len(self)):
            try:
                img, mask = self.read_arrays(i)
            except (ImageReadError, ValueError) as exc:
                problems.append(str(exc))
                continue
            ok += 1
            s = self.samples[i]
            native = s.image.shape[:2] if isinstance(s.image, np.ndarray) else s.size
            sizes[tuple(native) if native is not None else img.shape[:2]] += 1
            channels[img.shape[2]] += 1
            counts += np.bincount(mask[mask != 255].ravel(), minlength=self.num_classes)[
                : self.num_classes
            ]
        total = max(int(counts.sum()), 1)
        return {
            "pairs": len(self),
            "ok": ok,
            "sizes": sizes,
            "channels": channels,
            "class_fractions": [float(c) / total for c in counts],
            "problems": problems,
        }
