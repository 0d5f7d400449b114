"""Adversarial attacks (docs/ALGORITHMS.md §4): ASMA, FGSM, PGD, DAG, SegPGD, CosPGD, APGD,
DCT-PGD; CW L2.

Every attack is called as ``attack(model, images, masks=None, target_masks=None)`` and
returns an :class:`AttackResult`. ``Defended(model, defense)`` makes any attack adaptive
(BPDA / smooth surrogate, EOT). Targets come from :func:`make_targets`; attacks by name
from :func:`get_attack`.
"""

from segshield.attacks.adaptive import Defended
from segshield.attacks.apgd import APGD, apgd
from segshield.attacks.asma import ASMA, asma
from segshield.attacks.base import SUCCESS_IOU, Attack, AttackResult, loss_gradient
from segshield.attacks.cospgd import CosPGD
from segshield.attacks.cw import CarliniWagnerL2
from segshield.attacks.dag import DAG, dag
from segshield.attacks.dctpgd import DCTPGD, dctpgd
from segshield.attacks.fgsm import FGSM
from segshield.attacks.pgd import PGD, pgd
from segshield.attacks.registry import get_attack, list_attacks, parse_spec, register_attack
from segshield.attacks.segpgd import SegPGD
from segshield.attacks.targets import derangement, list_targets, make_targets

__all__ = [
    "Attack",
    "AttackResult",
    "SUCCESS_IOU",
    "ASMA",
    "FGSM",
    "PGD",
    "DAG",
    "SegPGD",
    "CosPGD",
    "APGD",
    "CarliniWagnerL2",
    "DCTPGD",
    "Defended",
    "asma",
    "pgd",
    "dag",
    "apgd",
    "dctpgd",
    "loss_gradient",
    "get_attack",
    "list_attacks",
    "parse_spec",
    "register_attack",
    "make_targets",
    "list_targets",
    "derangement",
]
