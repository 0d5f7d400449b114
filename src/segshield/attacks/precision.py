"""Faster attack arithmetic: bfloat16 autocast, channels-last and ``torch.compile``.

The attacks spend their time in the model's forward and backward passes. These options
change only those passes; the attack's own arithmetic (the image, its gradient, the step,
the clamp, ASMA's multiplier) stays float32, and so does every score the harness stores
(it predicts with the bare model). float32 without the options is the default and is the
published algorithm: :func:`fast_attack` then returns the attack itself, untouched.

- ``precision="bf16"``: the model runs under ``torch.autocast(dtype=torch.bfloat16)``
  (convolutions and matrix products in bfloat16, reductions float32); its logits are
  returned as float32. On a GPU with bfloat16 tensor cores (A100, H100, H200) this is
  the main speed-up. On a CPU it is allowed and computes the same thing, usually more
  slowly unless the CPU has bfloat16 instructions (AVX512-BF16, AMX); a warning says so.
  A CUDA device without bfloat16 support is refused.
- ``channels_last``: the model's images and weights in NHWC order, which the GPU's
  convolution kernels prefer. A copy of the model holds the reordered weights (the
  scoring model is not touched).
- ``compile``: ``torch.compile`` on the model (default mode; the first batch of each new
  shape compiles, which takes tens of seconds). Needs a C++ compiler on a CPU and Triton
  on a GPU.

Through a defence (:class:`~segshield.attacks.adaptive.Defended`) only the model behind
the defence is changed: the defence itself runs float32 as always (FR's block DCT in
bfloat16 would not be the defence any more).
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from segshield.attacks.adaptive import Defended
from segshield.choices import PRECISIONS

__all__ = ["FastForward", "FastAttack", "fast_attack", "fast_forward", "check_speed"]

log = logging.getLogger(__name__)


def check_speed(precision: str, channels_last: bool, compile: bool, device: Any = None) -> None:
    """Check the speed options, for ``device`` when given (a ``torch.device`` or name).

    Args:
        precision: one of :data:`segshield.choices.PRECISIONS` (``fp32``, ``bf16``).
        channels_last: bool.
        compile: bool.
        device: where the attacks run, or None to check the settings only.

    Raises:
        ValueError: a bad precision, ``bf16`` on a CUDA device without bfloat16, or
            ``compile`` without its compiler (Triton on CUDA, a C++ compiler on a CPU).
        TypeError: ``channels_last`` or ``compile`` not a bool.

    Example:
        >>> check_speed("bf16", True, False, "cpu")
        >>> check_speed("fp16", False, False)
        Traceback (most recent call last):
        ...
        ValueError: attack precision: expected one of 'fp32', 'bf16', got 'fp16'
    """
    if precision not in PRECISIONS:
        valid = ", ".join(repr(p) for p in PRECISIONS)
        raise ValueError(f"attack precision: expected one of {valid}, got {precision!r}")
    for name, value in (("channels_last", channels_last), ("compile", compile)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected true or false, got {value!r}")
    if device is None:
        return
    kind = torch.device(device).type
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            "attack precision: bf16 needs a GPU with bfloat16 support (Ampere or newer), "
            f"this one ({torch.cuda.get_device_name()}) has none; use --attack-precision fp32"
        )
    if compile and kind == "cuda":
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            raise ValueError(
                "compile: torch.compile on CUDA needs Triton, which is not installed; "
                "pip install triton, or drop --compile"
            )
    if compile and kind == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise ValueError(
            "compile: torch.compile on a CPU needs a C++ compiler (c++, g++ or clang++) on "
            "the PATH, none found; install one, or drop --compile"
        )


class FastForward(nn.Module):
    """A segmentation model run with bf16 autocast / channels-last / ``torch.compile``.

    ``forward(x)`` returns the model's logits as float32 (contiguous), like the model.
    Attributes the attacks read (``num_classes``, ``supports_gradients``, ``config``) are
    the model's.

    Args:
        model: ``nn.Module`` taking ``[0, 1]`` images ``(B, C, H, W)``, returning logits.
        precision: ``"fp32"`` or ``"bf16"`` (autocast on the input's device type).
        channels_last: reorder the images and (a copy of) the weights to NHWC.
        compile: ``torch.compile`` the (copied) model.
        backend: the ``torch.compile`` backend (default ``"inductor"``; the tests use
            ``"eager"``, which only traces).

    Raises:
        TypeError, ValueError: bad settings (:func:`check_speed`).

    Example:
        >>> net = nn.Conv2d(3, 2, 1)
        >>> fast = FastForward(net, precision="bf16", channels_last=True)
        >>> fast(torch.rand(2, 3, 8, 8)).dtype
        torch.float32
    """

    def __init__(
        self,
        model: nn.Module,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        backend: str = "inductor",
    ) -> None:
        super().__init__()
        check_speed(precision, channels_last, compile)
        self.precision = precision
        self.channels_last = channels_last
        self.compiled = compile
        if channels_last:
            model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.model = model
        self._call: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(model, backend=backend) if compile else model
        )
        self.train(model.training)

    @property
    def num_classes(self) -> int | None:
        """The model's ``num_classes`` when it has one."""
        return getattr(self.model, "num_classes", None)

    @property
    def supports_gradients(self) -> bool:
        """Whether the model provides gradients."""
        return bool(getattr(self.model, "supports_gradients", True))

    @property
    def config(self) -> dict[str, Any]:
        """The model's checkpoint config (empty when it has none)."""
        return dict(getattr(self.model, "config", {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits on ``x``, computed as set, returned float32 and contiguous."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self._call(x)
        return out.float().contiguous()


def _behind(defended: Defended, inner: nn.Module) -> Defended:
    """A copy of ``defended`` (same defence and EOT settings) around ``inner``."""
    out = Defended(
        inner,
        defended.defense,
        defended.eot_samples,
        eot=defended.eot,
        offsets=defended.offsets,
        seed=defended.seed,
    )
    out._gen.set_state(defended._gen.get_state())
    return out.train(defended.training)


def fast_forward(
    model: nn.Module,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    backend: str = "inductor",
) -> nn.Module:
    """The model to attack with the speed options: :class:`FastForward`, or ``model`` itself.

    For a :class:`~segshield.attacks.adaptive.Defended` model only the model behind the
    defence is wrapped (the defence keeps float32).

    Args:
        model: a model, or ``Defended(model, defence)``.
        precision, channels_last, compile, backend: as :class:`FastForward`.

    Returns:
        ``model`` unchanged for ``fp32`` without options; else the wrapped model.

    Example:
        >>> net = nn.Conv2d(1, 2, 1)
        >>> fast_forward(net) is net, type(fast_forward(net, "bf16")).__name__
        (True, 'FastForward')
    """
    check_speed(precision, channels_last, compile)
    if precision == "fp32" and not channels_last and not compile:
        return model
    if isinstance(model, Defended):
        return _behind(model, fast_forward(model.model, precision, channels_last, compile, backend))
    return FastForward(model, precision, channels_last, compile, backend)


class FastAttack:
    """An attack whose model passes run with the speed options (:func:`fast_forward`).

    Calls, settings, ``spec()`` and every attribute are the attack's; only the model it
    is given is wrapped. The wrapped model is made once per model (so a compiled model
    compiles once) and reused, also behind each defence of an adaptive attack.

    Args:
        attack: an :class:`~segshield.attacks.base.Attack`.
        precision, channels_last, compile: as :class:`FastForward`.
        backend: ``torch.compile`` backend (default ``"inductor"``).

    Example:
        >>> from segshield.attacks import PGD
        >>> fa = FastAttack(PGD(steps=2), precision="bf16")
        >>> r = fa(nn.Conv2d(1, 2, 1), torch.rand(1, 1, 8, 8))
        >>> r.attack, float(r.stats["linf"][0]) <= 8 / 255 + 1e-6
        ('pgd', True)
    """

    def __init__(
        self,
        attack: Any,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        backend: str = "inductor",
    ) -> None:
        check_speed(precision, channels_last, compile)
        self.attack = attack
        self.speed = {"precision": precision, "channels_last": channels_last, "compile": compile}
        self.backend = backend
        self._models: dict[int, tuple[nn.Module, nn.Module]] = {}
        self._warned = False

    def __getattr__(self, name: str) -> Any:
        if name == "attack":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.attack, name)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.speed.items())
        return f"FastAttack({self.attack!r}, {opts})"

    def _fast(self, model: nn.Module) -> nn.Module:
        bare = model.model if isinstance(model, Defended) else model
        cached = self._models.get(id(bare))
        if cached is None or cached[0] is not bare:
            cached = (bare, fast_forward(bare, **self.speed, backend=self.backend))
            self._models[id(bare)] = cached
        return _behind(model, cached[1]) if isinstance(model, Defended) else cached[1]

    def __call__(self, model, images, masks=None, target_masks=None):
        """Run the attack on ``model`` wrapped by :func:`fast_forward`; see ``Attack``."""
        on_cpu = getattr(getattr(images, "device", None), "type", None) == "cpu"
        if not self._warned and self.speed["precision"] == "bf16" and on_cpu:
            log.warning(
                "%s: bf16 on a CPU runs the model under bfloat16 autocast, which is usually "
                "slower than float32 unless the CPU has bfloat16 instructions; results "
                "differ slightly from float32",
                self.attack.name,
            )
            self._warned = True
        return self.attack(self._fast(model), images, masks=masks, target_masks=target_masks)


def fast_attack(
    attack: Any, precision: str = "fp32", channels_last: bool = False, compile: bool = False
) -> Any:
    """``attack`` itself for float32 without options, else :class:`FastAttack` around it.

    Example:
        >>> from segshield.attacks import PGD
        >>> a = PGD(); fast_attack(a) is a, type(fast_attack(a, "bf16")).__name__
        (True, 'FastAttack')
    """
    check_speed(precision, channels_last, compile)
    if precision == "fp32" and not channels_last and not compile:
        return attack
    return FastAttack(attack, precision, channels_last, compile)
