"""Pictures of the harness: 8-bit rounding and the example tiles of the report.

The FR paper's pipeline stores adversarial images as 8-bit PNG and reads them back
(:func:`quantize_8bit`); the report shows, for a few samples, the image, the
adversarial image, the amplified perturbation, the defended image and the masks
(:func:`example_tiles`, PNG bytes kept in the result store).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from segshield._checks import check_images

__all__ = ["quantize_8bit", "mask_to_rgb", "png_bytes", "example_tiles"]

# Colours of mask tiles: background, class 1, class 2, ...; ignore (255) is grey.
_PALETTE = np.array(
    [[0, 0, 0], [240, 240, 240], [220, 50, 47], [38, 139, 210], [133, 153, 0], [211, 54, 130]],
    dtype=np.uint8,
)


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round images to the 8-bit grid, as saving to PNG and reading back does.

    Args:
        x: images ``(B, C, H, W)`` in ``[0, 1]``.

    Returns:
        ``round(x * 255)`` clipped to ``[0, 255]``, divided by 255 (same dtype).

    Example:
        >>> quantize_8bit(torch.tensor([[[[0.5, 1.2]]]])).mul(255).tolist()
        [[[[128.0, 255.0]]]]
    """
    check_images(x, check_range=False)  # clipping is part of what it does
    return (x * 255).round().clamp(0, 255) / 255


def mask_to_rgb(mask: torch.Tensor) -> np.ndarray:
    """``(H, W)`` class ids to an ``(H, W, 3)`` uint8 picture (255 = ignore, grey).

    Example:
        >>> mask_to_rgb(torch.tensor([[0, 1, 255]]))[0].tolist()
        [[0, 0, 0], [240, 240, 240], [128, 128, 128]]
    """
    m = mask.detach().cpu().numpy()
    out = _PALETTE[np.clip(m, 0, len(_PALETTE) - 1)]
    out[m == 255] = 128
    return out


def png_bytes(arr: np.ndarray) -> bytes:
    """Encode an ``(H, W, C)`` or ``(H, W)`` uint8 array as PNG bytes (in memory).

    Example:
        >>> png_bytes(np.zeros((2, 2), np.uint8))[:4]
        b'\\x89PNG'
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _image_rgb(x: torch.Tensor) -> np.ndarray:
    a = (x.detach().float().cpu().clamp(0, 1) * 255).round().clamp(0, 255)
    a = a.permute(1, 2, 0).numpy().astype(np.uint8)
    if a.shape[2] not in (1, 3):
        a = a[:, :, :3] if a.shape[2] > 3 else a[:, :, :1]
    return a


def _perturbation_rgb(delta: torch.Tensor) -> np.ndarray:
    """Amplified perturbation: 0.5 grey plus delta scaled so its max reaches the range."""
    peak = float(delta.abs().max())
    scale = 0.5 / peak if peak > 0 else 0.0
    return _image_rgb((0.5 + delta * scale).clamp(0, 1))


def example_tiles(
    images: dict[str, torch.Tensor], masks: dict[str, torch.Tensor | None]
) -> list[tuple[str, bytes]]:
    """PNG tiles of one sample: its pictures and masks, in the report's order.

    Args:
        images: ``image``, ``adversarial`` and ``defended`` ``(C, H, W)`` in ``[0, 1]``.
        masks: ``gt``, ``target`` (or None for untargeted attacks), ``clean``,
            ``attacked`` and ``recovered`` ``(H, W)`` class ids.

    Returns:
        ``(kind, PNG bytes)`` pairs: ``image``, ``adversarial``, ``perturbation``,
        ``defended``, ``mask_gt``, [``mask_target``], ``mask_clean``,
        ``mask_attacked``, ``mask_recovered``.

    Example:
        >>> x, m = torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.long)
        >>> tiles = example_tiles({"image": x, "adversarial": x + 0.1, "defended": x},
        ...     {"gt": m, "target": None, "clean": m, "attacked": m, "recovered": m})
        >>> [kind for kind, _ in tiles][:4]
        ['image', 'adversarial', 'perturbation', 'defended']
    """
    image, adv = images["image"], images["adversarial"]
    tiles = {
        "image": _image_rgb(image),
        "adversarial": _image_rgb(adv),
        "perturbation": _perturbation_rgb(adv - image),
        "defended": _image_rgb(images["defended"]),
    }
    for name in ("gt", "target", "clean", "attacked", "recovered"):
        if masks[name] is not None:
            tiles[f"mask_{name}"] = mask_to_rgb(masks[name])
    return [(kind, png_bytes(arr)) for kind, arr in tiles.items()]
