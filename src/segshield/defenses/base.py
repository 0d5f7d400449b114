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
        self, arr: np.ndarray, device: str | torch.device | None = None
    ) -> np.ndarray:
        """Defend one uint8/uint16 numpy image (what :meth:`forward` does with numpy input).

        Args:
            arr: ``(H, W)`` or ``(H, W, C)`` uint8 or uint16 image.
            device: where the defence computes (its tensors must be there). Default CPU.

        Returns:
            The defended image, same shape and dtype (rounded, then clipped).

        Raises:
            TypeError: ``arr`` is not uint8/uint16.
            ValueError: ``arr`` is empty or not 2-D/3-D.

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
        # float64 keeps k/scale exact enough that FR's paper-faithful mode sees integers.
        t = torch.from_numpy(np.ascontiguousarray(hwc, dtype=np.float64) / scale).to(device)
        with torch.no_grad():
            y = self.transform(t.permute(2, 0, 1).unsqueeze(0))
        out = np.clip(np.round(y[0].permute(1, 2, 0).cpu().numpy() * scale), 0, scale)
        out = out.astype(arr.dtype)
        return out[:, :, 0] if arr.ndim == 2 else out
