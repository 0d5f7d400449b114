"""The defended model as one traceable module: input scaling, defence, model, probabilities.

docs/ALGORITHMS.md §1 (images in ``[0, 1]``, normalisation inside the model) and §2
(FR): :class:`DefendedGraph` is what :func:`segshield.export.export_defended` hands to
``torch.export``. It does in one graph what segshield does in eager mode: the defence
(FR and Feature Distillation through
:func:`~segshield.defenses.dct.quantize_blocks` with ``traceable=True``), the model's
``(x - mean) / std``, the padding to the network's stride and the crop, then a sigmoid
(K = 1) or a softmax over classes (K >= 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from segshield.defenses.base import Defense
from segshield.models.base import SegmentationModel

__all__ = ["DefendedGraph", "EXPORTABLE_DEFENSES", "REFUSED_DEFENSES", "traceable_defense"]

#: Defences that export as plain tensor operations (``none`` = no defence).
EXPORTABLE_DEFENSES = ("fr", "fd", "bitdepth", "gaussian", "none")
#: Defences refused, with the reason given in the error.
REFUSED_DEFENSES = {
    "jpeg": "it runs libjpeg through Pillow outside PyTorch, so there is no graph to export",
    "median": (
        "ONNX has no median operator and the exporter no translation of aten::median, and "
        "its sliding window (unfold) does not trace for every image size"
    ),
}
# The defences whose transform takes ``traceable=True`` (the block-DCT quantiser).
_BLOCK_DCT = ("fr", "fd")


def traceable_defense(defense: Defense) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward computation of an exportable defence, in its traceable form.

    Args:
        defense: a defence from :func:`segshield.defenses.get_defense`.

    Returns:
        A function ``(B, C, H, W) -> (B, C, H, W)`` giving the numbers ``defense(x)``
        gives (FR and FD up to float summation order).

    Raises:
        ValueError: the defence cannot be exported; the message names it, says why and
            lists the exportable ones.

    Example:
        >>> from segshield.defenses import get_defense
        >>> traceable_defense(get_defense("bitdepth:bits=1"))(torch.full((1, 1, 2, 2), 0.7))
        tensor([[[[1., 1.],
                  [1., 1.]]]])
    """
    name = getattr(defense, "name", type(defense).__name__)
    if name not in EXPORTABLE_DEFENSES:
        why = REFUSED_DEFENSES.get(name, "segshield does not know how to export it")
        raise ValueError(
            f"--defense {defense.spec() if isinstance(defense, Defense) else name}: "
            f"cannot be exported ({why}); exportable defences: {', '.join(EXPORTABLE_DEFENSES)}"
        )
    if name in _BLOCK_DCT:

        def block_dct(x: torch.Tensor) -> torch.Tensor:
            return defense.transform(x, traceable=True)

        return block_dct
    return defense.transform


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad H and W up to multiples of ``multiple`` (sizes may be symbolic)."""
    h, w = x.shape[-2:]
    ph = multiple * ((h + multiple - 1) // multiple) - h
    pw = multiple * ((w + multiple - 1) // multiple) - w
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


class DefendedGraph(nn.Module):
    """Defence, normalisation and network as one module returning probabilities.

    Args:
        model: the segmentation model (its ``net``, ``mean``, ``std``, ``stride`` and
            ``num_classes`` are used; it is not changed).
        defense: an exportable defence (:data:`EXPORTABLE_DEFENSES`).
        uint8_input: take ``uint8`` images (0..255) instead of floats in ``[0, 1]``
            (default False).

    Shape:
        - Input: ``(B, C, H, W)`` float32 in ``[0, 1]`` (or uint8), any B, H, W.
        - Output: ``(B, K, H, W)`` float32 probabilities: the sigmoid of the logit for
          K = 1, the softmax over the K classes for K >= 2.

    Raises:
        ValueError: the defence cannot be exported.
        TypeError: ``model`` is not a :class:`SegmentationModel`.

    Example:
        >>> from segshield.models import build_model
        >>> from segshield.defenses import get_defense
        >>> g = DefendedGraph(build_model("unet", width=4, depth=2), get_defense("fr"))
        >>> g(torch.rand(2, 3, 23, 19)).shape
        torch.Size([2, 1, 23, 19])
    """

    def __init__(
        self, model: SegmentationModel, defense: Defense, *, uint8_input: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(model, SegmentationModel):
            raise TypeError(
                f"model: expected a segshield SegmentationModel, got {type(model).__name__}; "
                "load a checkpoint with segshield.models.load or wrap a network with "
                "segshield.models.wrap"
            )
        self._defend = traceable_defense(defense)
        self.defense = defense
        self.net = model.net
        self.register_buffer("mean", model.mean.detach().clone(), persistent=False)
        self.register_buffer("std", model.std.detach().clone(), persistent=False)
        self.stride = int(model.stride)
        self.num_classes = int(model.num_classes)
        self.uint8_input = bool(uint8_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B, K, H, W)`` for images ``(B, C, H, W)`` (see the class)."""
        x = x.to(torch.float32) / 255.0 if self.uint8_input else x
        h, w = x.shape[-2:]
        z = (self._defend(x) - self.mean) / self.std
        out = self.net(_pad_to(z, self.stride))
        # crop back with a negative pad: traces for any size, unlike a slice
        out = F.pad(out, (0, w - out.shape[-1], 0, h - out.shape[-2]))
        return torch.sigmoid(out) if self.num_classes == 1 else torch.softmax(out, dim=1)
