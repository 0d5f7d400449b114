"""Indexing helpers shared by the real-data loaders (private): pairing, probing, splits.

Splits for data sets without official split folders (``split_samples``): the samples
are sorted by name, shuffled by ``numpy.random.default_rng([seed, 7])`` and cut into
70 % train, 15 % val, 15 % test (counts rounded; test takes the remainder). The three
splits are disjoint, cover the set, and depend only on the names and the seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segshield._checks import check_choice
from segshield.choices import SPLITS
from segshield.data.dataset import Sample
from segshield.data.errors import MissingFolderError, describe_folder
from segshield.utils.imageio import IMAGE_SUFFIXES

__all__ = [
    "SPLITS",
    "SPLIT_FRACTIONS",
    "Index",
    "image_files",
    "pair_by_stem",
    "probe",
    "split_samples",
    "require_dir",
]

log = logging.getLogger("segshield.data")

SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


@dataclass
class Index:
    """What a loader found: usable samples and the problems met while pairing."""

    samples: list[Sample]
    problems: list[str] = field(default_factory=list)


def require_dir(path: Path, what: str) -> Path:
    """Raise :class:`MissingFolderError` naming ``what`` when ``path`` is not a folder."""
    if not path.is_dir():
        raise MissingFolderError(f"{path}: no such folder; expected {what}")
    return path


def image_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files (``IMAGE_SUFFIXES``, any case) in ``folder``, sorted; hidden files skipped."""
    it: Iterable[Path] = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in it
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def pair_by_stem(
    images: Sequence[Path],
    masks: Sequence[Path],
    *,
    mask_suffix: str = "",
    image_filter: Callable[[Path], bool] | None = None,
) -> Index:
    """Pair images with masks whose stem is the image stem plus ``mask_suffix`` (any case).

    Problems recorded (and the pair skipped): image without mask, mask without image,
    two files with the same stem.
    """
    problems: list[str] = []

    def table(files: Sequence[Path], suffix: str, what: str) -> dict[str, Path | None]:
        out: dict[str, Path | None] = {}  # None marks an ambiguous stem
        for p in files:
            stem = p.stem.lower()
            if suffix:
                if not stem.endswith(suffix.lower()):
                    problems.append(f"{p}: {what} name does not end with {suffix!r}; skipped")
                    continue
                stem = stem[: -len(suffix)]
            if stem in out:
                problems.append(f"{p}: same name as {out[stem] or 'another file'}; skipped")
                out[stem] = None
                continue
            out[stem] = p
        return out

    imgs = table([p for p in images if image_filter is None or image_filter(p)], "", "image")
    msks = table(masks, mask_suffix, "mask")
    samples: list[Sample] = []
    for stem, ip in imgs.items():
        if ip is None:
            continue
        if stem not in msks:
            problems.append(f"{ip}: no mask named {stem}{mask_suffix}.* found; skipped")
            continue
        mp = msks[stem]
        if mp is None:
            problems.append(f"{ip}: several masks named {stem}{mask_suffix}.*; skipped")
            continue
        samples.append(Sample(ip.stem, ip, (mp,)))
    for stem, mp in msks.items():
        if mp is not None and stem not in imgs:
            problems.append(f"{mp}: mask without an image named {stem}.*; skipped")
    return Index(samples, problems)


def probe(index: Index) -> Index:
    """Open every file's header (cheap): drop unreadable pairs and pairs of unequal size."""
    good: list[Sample] = []
    problems = list(index.problems)
    for s in index.samples:
        sizes = []
        bad = None
        for p in (s.image, *s.masks):
            try:
                with Image.open(p) as im:
                    sizes.append((im.height, im.width))
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                bad = f"{p}: unreadable ({exc}); pair {s.name!r} skipped"
                break
        if bad is None and len(set(sizes)) > 1:
            names = ", ".join(
                f"{p.name} {h}x{w}" for p, (h, w) in zip((s.image, *s.masks), sizes, strict=True)
            )  # type: ignore[misc]
            bad = f"{s.image}: image and mask sizes differ (HxW: {names}); pair skipped"
        if bad is not None:
            problems.append(bad)
            continue
        good.append(Sample(s.name, s.image, s.masks, s.meta, sizes[0]))
    return Index(good, problems)


def split_samples(samples: Sequence[Sample], split: str, seed: int) -> list[Sample]:
    """Seeded, deterministic, disjoint split (see the module docstring)."""
    check_choice("split", split, SPLITS)
    ordered = sorted(samples, key=lambda s: s.name)
    if split == "all":
        return ordered
    n = len(ordered)
    perm = np.random.default_rng([int(seed), 7]).permutation(n)
    n_train = int(round(SPLIT_FRACTIONS["train"] * n))
    n_val = int(round(SPLIT_FRACTIONS["val"] * n))
    cut = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    lo, hi = cut[split]
    return [ordered[i] for i in sorted(perm[lo:hi].tolist())]


def index_two_folders(
    root: Path,
    split: str,
    seed: int,
    layouts: Sequence[tuple[str, str]] = (("images", "masks"),),
) -> Index:
    """Pair ``root/IMAGES/NAME.*`` with ``root/MASKS/NAME.*`` for the first layout present.

    Raises:
        MissingFolderError: none of the ``(images, masks)`` folder pairs exists (the
            message says what ``root`` holds instead).
    """
    for img_name, mask_name in layouts:
        img_dir, mask_dir = root / img_name, root / mask_name
        if img_dir.is_dir() and mask_dir.is_dir():
            found = probe(pair_by_stem(image_files(img_dir), image_files(mask_dir)))
            return Index(split_samples(found.samples, split, seed), found.problems)
    want = " or ".join(f"{a}/ + {b}/" for a, b in layouts)
    half = [(a, b) for a, b in layouts if (root / a).is_dir() and not (root / b).is_dir()]
    fix = f"; add {half[0][1]}/ with one mask per image, named like the image" if half else ""
    raise MissingFolderError(
        f"{root}: expected the sub-folders {want} (each image with a mask of the same "
        f"name); {describe_folder(root)}{fix}"
    )
