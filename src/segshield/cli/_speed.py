"""The attack speed options of ``segshield evaluate`` and ``segshield attack``, declared once.

``--attack-precision fp32|bf16``, ``--channels-last`` and ``--compile`` choose how the
attacks run the model (:mod:`segshield.attacks.precision`); float32 without options is
the default and the published algorithm.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_attack_speed(p)
    >>> p.parse_args(["--attack-precision", "bf16", "--compile"])
    Namespace(attack_precision='bf16', channels_last=False, compile=True)
"""

from __future__ import annotations

import argparse

from segshield.choices import PRECISIONS

__all__ = ["add_attack_speed", "check_attack_speed"]


def add_attack_speed(p: argparse.ArgumentParser) -> None:
    """Register ``--attack-precision``, ``--channels-last`` and ``--compile``."""
    p.add_argument(
        "--attack-precision",
        choices=PRECISIONS,
        help="arithmetic of the model inside the attacks: fp32 (default, the published "
        "algorithm) or bf16 autocast (faster on a GPU; scores stay float32)",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="run the attacks' model passes channels-last (faster convolutions on a GPU)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model inside the attacks (the first batch compiles)",
    )


def check_attack_speed(
    precision: str, channels_last: bool, compile: bool, device: str | None
) -> None:
    """Check the options for ``device`` before any work.

    Raises:
        ValueError: naming the flag: bf16 on a GPU without bfloat16, ``--compile``
            without its compiler.
    """
    from segshield.attacks.precision import check_speed

    try:
        check_speed(precision, channels_last, compile, device)
    except ValueError as exc:
        flag = "--compile" if str(exc).startswith("compile") else "--attack-precision"
        raise ValueError(f"{flag}: {exc}") from None
