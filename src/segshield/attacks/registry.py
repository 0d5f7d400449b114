"""Attack registry: ``get_attack("asma:steps=100,tau=1e-7")`` builds a configured attack.

A spec is ``NAME`` or ``NAME:key=value,key=value``. The registry is a
:class:`segshield._registry.Registry`: each attack's parameters come from its
constructor's signature and values follow the one spec grammar of :mod:`segshield._spec`
(never ``eval``): ``true``/``false`` -> bool, ``none`` -> None, integers, floats
(``1e-7``, ``inf``) and fractions ``a/b`` (``8/255``), read as the parameter's declared
type. The attack's ``__init__`` then validates them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from segshield._registry import Registry, split
from segshield._spec import parse_value
from segshield.attacks.apgd import APGD
from segshield.attacks.asma import ASMA
from segshield.attacks.base import Attack
from segshield.attacks.cospgd import CosPGD
from segshield.attacks.cw import CarliniWagnerL2
from segshield.attacks.dag import DAG
from segshield.attacks.dctpgd import DCTPGD
from segshield.attacks.fgsm import FGSM
from segshield.attacks.pgd import PGD
from segshield.attacks.segpgd import SegPGD

__all__ = ["ATTACKS", "REGISTRY", "get_attack", "list_attacks", "parse_spec", "register_attack"]

_EXAMPLE = "asma:steps=100,tau=1e-7"

#: The attack registry.
REGISTRY: Registry[Attack] = Registry("attack", names_label="attacks", example=_EXAMPLE)
for _name, _cls in (
    ("asma", ASMA),
    ("fgsm", FGSM),
    ("pgd", PGD),
    ("dag", DAG),
    ("segpgd", SegPGD),
    ("cw", CarliniWagnerL2),
    ("cospgd", CosPGD),
    ("apgd", APGD),
    ("dctpgd", DCTPGD),
):
    REGISTRY.register(_name, _cls)

#: name -> factory (the attack class); a read-only view of :data:`REGISTRY`.
ATTACKS: Mapping[str, Callable[..., Attack]] = REGISTRY.factories


def register_attack(name: str, factory: Callable[..., Attack]) -> None:
    """Add an attack factory under ``name`` (for attacks defined outside segshield).

    Args:
        name: lower-case registry name.
        factory: an :class:`Attack` class or a function returning one; its keyword
            parameters become the spec's settings.

    Raises:
        ValueError: ``name`` is already registered or not a valid name.

    Example:
        >>> "myfgsm" in list_attacks()
        False
    """
    REGISTRY.register(name, factory)


def list_attacks() -> dict[str, list[str]]:
    """Registered attack names and the parameters each accepts.

    Example:
        >>> list_attacks()["asma"]
        ['tau', 'beta', 'steps', 'stop_at_iou', 'iou']
    """
    return {name: list(REGISTRY.entry(name).params) for name in REGISTRY}


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:k=v,k=v"`` into the name and a dict of values (untyped grammar).

    Any name is accepted (target specs use it too); :func:`get_attack` checks names,
    parameters and their types.

    Raises:
        TypeError: ``spec`` is not a string.
        ValueError: empty name or a ``key=value`` pair without ``=``.

    Example:
        >>> parse_spec("pgd:eps=8/255,steps=20,norm=l2")
        ('pgd', {'eps': 0.03137254901960784, 'steps': 20, 'norm': 'l2'})
    """
    name, pairs = split(spec, "attack", _EXAMPLE)
    return name, {key: parse_value(value) for key, value in pairs}


def get_attack(spec: str) -> Attack:
    """Build an attack from a registry spec.

    Args:
        spec: ``"NAME"`` or ``"NAME:key=value,..."``, e.g. ``"asma:steps=100,tau=1e-7"``,
            ``"pgd:eps=8/255,steps=20,norm=linf"``. Names: ``list_attacks()``.

    Returns:
        The configured attack.

    Raises:
        ValueError: unknown name (the valid names are listed), unknown parameter (the
            attack's parameters are listed), a value not of the parameter's type, or a
            value the attack rejects.
        TypeError: ``spec`` is not a string, or a value the attack's checks reject.

    Example:
        >>> get_attack("asma:steps=100,tau=1e-7").steps
        100
    """
    return REGISTRY.build(spec)
