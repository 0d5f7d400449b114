"""Attack suites: named lists of attack specs at one budget, for the worst case per image.

``standard`` follows the attack ensemble of SEA (Croce, Singh & Hein, ECCV 2024) and adds
the attacks aimed at this project's defences: ASMA (Chen et al.), PGD (Madry et al., ICLR
2018), APGD with cross-entropy and with balanced masked cross-entropy (Croce & Hein, ICML
2020; SEA's losses), CosPGD (Agnihotri & Keuper) on the bare model, and DCT-PGD, the
quantisation-aware attack that reads the quantisation table from the defence it attacks,
through each defence (adaptive). Every gradient attack gets the suite's L-inf budget
``eps`` (default ``8/255``) and :data:`STEPS` steps; ASMA has no budget parameter (it
minimises the perturbation's size itself) and runs with its defaults, its L-inf is
reported with its rows. The suite's specs are checked against the attack registry when
they are used (:func:`check_suite`), so an attack that is not registered is named by the
registry's unknown-attack message.
"""

from __future__ import annotations

from segshield._checks import check_choice, check_number
from segshield._spec import parse_value
from segshield.choices import SUITES

__all__ = ["SUITES", "DEFAULT_EPS", "STEPS", "check_eps", "suite_specs", "check_suite"]

#: The default L-inf budget of a suite (spec text).
DEFAULT_EPS = "8/255"
#: Steps of every gradient attack of a suite.
STEPS = 50
#: name -> (attacks on the bare model, adaptive attacks); ``{eps}`` is the budget.
_SUITES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "standard": (
        (
            "asma",
            "pgd:eps={eps},steps={steps}",
            "apgd:loss=ce,eps={eps},steps={steps}",
            "apgd:loss=bmce,eps={eps},steps={steps}",
            "cospgd:eps={eps},steps={steps}",
        ),
        ("dctpgd:eps={eps},steps={steps}",),
    ),
}


def check_eps(eps: object) -> str:
    """The budget as spec text: a positive number or fraction (``8/255``, ``0.03``).

    Raises:
        ValueError: not a positive number.

    Example:
        >>> check_eps("4/255"), check_eps(0.5)
        ('4/255', '0.5')
    """
    text = str(eps).strip()
    value = parse_value(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"eps: expected a positive number or fraction such as 8/255, got {eps!r}")
    check_number("eps", value, low=0, low_inclusive=False)
    return text


def suite_specs(name: str, eps: object = DEFAULT_EPS) -> tuple[list[str], list[str]]:
    """The attack specs of a suite at a budget.

    Args:
        name: one of :data:`SUITES`.
        eps: L-inf budget of the gradient attacks, a number or a fraction text.
            Default ``8/255``.

    Returns:
        ``(attacks, adaptive)``: specs run on the bare model and through each defence.

    Raises:
        ValueError: unknown suite name or a bad budget.

    Example:
        >>> attacks, adaptive = suite_specs("standard", "4/255")
        >>> attacks[1], adaptive
        ('pgd:eps=4/255,steps=50', ['dctpgd:eps=4/255,steps=50'])
    """
    check_choice("suite", name, SUITES)
    fill = {"eps": check_eps(eps), "steps": STEPS}
    plain, adaptive = _SUITES[name]
    return [s.format(**fill) for s in plain], [s.format(**fill) for s in adaptive]


def check_suite(name: str, eps: object = DEFAULT_EPS) -> None:
    """Check every spec of a suite against the attack registry (builds each attack).

    Raises:
        ValueError: an attack of the suite is not registered (the registry's message,
            which lists the registered attacks) or rejects its settings.

    Example:
        >>> check_suite("standard")  # doctest: +SKIP
    """
    from segshield.attacks import get_attack

    attacks, adaptive = suite_specs(name, eps)
    for spec in [*attacks, *adaptive]:
        try:
            get_attack(spec)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"suite {name!r}: attack {spec!r}: {exc}") from None
