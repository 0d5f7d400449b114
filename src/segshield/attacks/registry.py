"""Attack registry: ``get_attack("asma:steps=100,tau=1e-7")`` builds a configured attack.

A spec is ``NAME`` or ``NAME:key=value,key=value``. Values are parsed without ``eval``:
``true``/``false`` -> bool, ``none`` -> None, integers, floats (``1e-7``, ``inf``) and
fractions ``a/b`` (``8/255``); anything else stays a string. The attack's ``__init__``
then validates them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from segshield._spec import parse_value, split_spec
from segshield.attacks.asma import ASMA
from segshield.attacks.base import Attack
from segshield.attacks.cw import CarliniWagnerL2
from segshield.attacks.dag import DAG
from segshield.attacks.fgsm import FGSM
from segshield.attacks.pgd import PGD
from segshield.attacks.segpgd import SegPGD

__all__ = ["ATTACKS", "get_attack", "list_attacks", "parse_spec", "register_attack"]

#: name -> factory (the attack class).
ATTACKS: dict[str, Callable[..., Attack]] = {
    "asma": ASMA,
    "fgsm": FGSM,
    "pgd": PGD,
    "dag": DAG,
    "segpgd": SegPGD,
    "cw": CarliniWagnerL2,
}


def register_attack(name: str, factory: Callable[..., Attack]) -> None:
    """Add an attack factory under ``name`` (for attacks defined outside segshield).

    Raises:
        ValueError: ``name`` is already registered.
    """
    if name in ATTACKS:
        raise ValueError(f"attack {name!r} is already registered")
    ATTACKS[name] = factory


def _params(factory: Callable[..., Attack]) -> list[str]:
    sig = inspect.signature(factory)
    return [p.name for p in sig.parameters.values() if p.name != "self"]


def list_attacks() -> dict[str, list[str]]:
    """Registered attack names and the parameters each accepts.

    Example:
        >>> list_attacks()["asma"]
        ['tau', 'beta', 'steps', 'stop_at_iou', 'iou']
    """
    return {name: _params(f) for name, f in ATTACKS.items()}


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:k=v,k=v"`` into the name and a dict of parsed values.

    Raises:
        ValueError: empty name or a ``key=value`` pair without ``=``.

    Example:
        >>> parse_spec("pgd:eps=8/255,steps=20,norm=l2")
        ('pgd', {'eps': 0.03137254901960784, 'steps': 20, 'norm': 'l2'})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"attack spec: expected 'NAME[:key=value,...]', got {spec!r}")
    name, pairs = split_spec(
        spec,
        lambda part: (
            f"attack spec {spec!r}: expected key=value, got {part!r}; "
            "example: asma:steps=100,tau=1e-7"
        ),
    )
    return name.lower(), {key: parse_value(value) for key, value in pairs}


def get_attack(spec: str) -> Attack:
    """Build an attack from a registry spec.

    Args:
        spec: ``"NAME"`` or ``"NAME:key=value,..."``, e.g. ``"asma:steps=100,tau=1e-7"``,
            ``"pgd:eps=8/255,steps=20,norm=linf"``. Names: ``list_attacks()``.

    Returns:
        The configured attack.

    Raises:
        ValueError: unknown name (the valid names are listed), unknown parameter (the
            attack's parameters are listed), or a value the attack rejects.
        TypeError: a value of the wrong type (from the attack's checks).

    Example:
        >>> get_attack("asma:steps=100,tau=1e-7").steps
        100
    """
    name, params = parse_spec(spec)
    if name not in ATTACKS:
        valid = ", ".join(sorted(ATTACKS))
        raise ValueError(f"attack: unknown name {name!r}; valid attacks: {valid}")
    factory = ATTACKS[name]
    allowed = _params(factory)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"attack {name!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"valid parameters: {', '.join(allowed)}"
        )
    return factory(**params)
