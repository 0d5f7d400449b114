"""Gradient policies of the defences, declared once (torch-free).

Reference: docs/ALGORITHMS.md §2 ("Gradient"); Athalye et al., "Obfuscated Gradients
Give a False Sense of Security", ICML 2018 (BPDA). Each defence class lists the policies
it offers in its ``gradients`` attribute (first = default), drawn from :data:`GRADIENTS`;
the defence registry, ``Defended`` and the CLI read the names from here.
"""

from __future__ import annotations

__all__ = ["GRADIENTS", "ADAPTIVE_GRADIENTS", "GRADIENT_HELP"]

#: Every gradient policy a defence may declare.
GRADIENTS: tuple[str, ...] = ("exact", "bpda", "smooth")

#: What each policy means (for listings and help texts).
GRADIENT_HELP: dict[str, str] = {
    "exact": "the defence's own gradient (it is differentiable)",
    "bpda": "forward = defence, backward = identity (straight-through, BPDA)",
    "smooth": "the gradient of a differentiable surrogate of the defence",
}

#: Policies an adaptive attack may request (``segshield attack --adaptive``): ``exact``
#: is no choice there, a differentiable defence uses it already.
ADAPTIVE_GRADIENTS: tuple[str, ...] = tuple(g for g in GRADIENTS if g != "exact")
