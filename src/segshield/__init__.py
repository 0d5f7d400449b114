"""segshield: attack, defend and evaluate medical image segmentation models.

The package follows the conventions of docs/ALGORITHMS.md §1: images are ``(B, C, H, W)`` float
tensors in ``[0, 1]``; models return logits ``(B, K, H, W)``; masks are ``(B, H, W)``
integer class ids with 255 meaning "ignore".
"""

from segshield._version import __version__

__all__ = ["__version__"]
