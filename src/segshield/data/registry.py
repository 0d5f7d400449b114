"""``load_dataset("KIND[:PATH]")``: the registry of data-set kinds (phantoms and layouts).

Kinds and their masks (docs/ALGORITHMS.md §1, §6):

| kind | PATH | classes | regions |
| --- | --- | --- | --- |
| ``phantom-derm`` | none | background, lesion | lesion (1) |
| ``phantom-fundus`` | none | background, rim, cup | disc (1, 2), cup (2) |
| ``isic`` | ISIC 2016-2018 Task 1 root | background, lesion | lesion (1) |
| ``ph2`` | PH2 root | background, lesion | lesion (1) |
| ``drishti`` | Drishti-GS1 root | background, rim, cup | disc (1, 2), cup (2) |
| ``refuge`` | ``images/`` + ``masks/`` (0 cup, 128 rim, 255 bg) | bg, rim, cup | disc, cup |
| ``origa`` | ``images/`` + ``masks/`` (0/1/2) | background, rim, cup | disc, cup |
| ``paddleseg`` | ``images/`` + ``masks/`` or PaddleSeg's folders | background, disc | disc (1) |
| ``folder`` | ``images/`` + ``masks/`` | inferred | foreground (1..K-1) |

Phantoms are generated once per ``(kind, seed, n, size)`` and kept in memory (the
last four such sets); their split uses the same 70/15/15 seeded rule as real data
sets without official split folders (see ``segshield.data._pairs``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segshield._checks import check_choice, check_number
from segshield.data import drishti, folder, isic, origa, paddleseg, ph2, refuge
from segshield.data._pairs import SPLITS, Index, split_samples
from segshield.data.dataset import RESIZE_POLICIES, MaskDecoder, Sample, SegDataset
from segshield.data.phantom_derm import Phantom, make_derm_phantom, parse_size
from segshield.data.phantom_fundus import make_fundus_phantom

__all__ = ["load_dataset", "list_kinds", "parse_spec"]

log = logging.getLogger("segshield.data")

LESION = {"class_names": ("background", "lesion"), "regions": {"lesion": (1,)}}
DISC_CUP = {
    "class_names": ("background", "rim", "cup"),
    "regions": {"disc": (1, 2), "cup": (2,)},
}
DISC = {"class_names": ("background", "disc"), "regions": {"disc": (1,)}}


@dataclass(frozen=True)
class Kind:
    """How to index one kind of data set.

    Attributes:
        index: ``(root, split, seed) -> Index`` for file layouts; ``None`` for phantoms.
        decode: raw mask arrays -> class ids.
        classes: ``class_names`` and ``regions`` (``folder`` infers them).
        maker: phantom generator for phantom kinds.
    """

    index: Callable[[Path, str, int], Index] | None
    decode: MaskDecoder | None
    classes: dict | None
    maker: Callable[..., Phantom] | None = None


_KINDS: dict[str, Kind] = {
    "phantom-derm": Kind(None, None, LESION, make_derm_phantom),
    "phantom-fundus": Kind(None, None, DISC_CUP, make_fundus_phantom),
    "isic": Kind(isic.index_isic, isic.decode_binary, LESION),
    "ph2": Kind(ph2.index_ph2, ph2.decode_ph2, LESION),
    "drishti": Kind(drishti.index_drishti, drishti.decode_softmaps, DISC_CUP),
    "refuge": Kind(refuge.index_refuge, refuge.decode_refuge, DISC_CUP),
    "origa": Kind(origa.index_origa, origa.decode_origa, DISC_CUP),
    "paddleseg": Kind(paddleseg.index_paddleseg, paddleseg.decode_paddleseg, DISC),
    "folder": Kind(folder.index_folder, folder.decode_folder, None),
}


def list_kinds() -> list[str]:
    """Names accepted as ``KIND`` in :func:`load_dataset`.

    Example:
        >>> "isic" in list_kinds()
        True
    """
    return list(_KINDS)


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """Split ``"KIND[:PATH]"`` into the kind and an optional path (split at the first ``:``).

    Raises:
        TypeError: ``spec`` is not a string.
        ValueError: unknown kind (the valid ones are listed), a path given to a phantom,
            or no path given to a file layout.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected a string 'KIND[:PATH]', got {type(spec).__name__}")
    kind, sep, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in _KINDS:
        raise ValueError(
            f"spec: unknown data-set kind {kind!r} in {spec!r}; expected one of "
            f"{', '.join(_KINDS)} (as KIND or KIND:PATH)"
        )
    if _KINDS[kind].maker is not None:
        if sep and path:
            raise ValueError(
                f"spec: {kind} is generated, it takes no PATH (got {spec!r}); use {kind!r}"
            )
        return kind, None
    if not path:
        raise ValueError(f"spec: {kind} needs a folder, as '{kind}:PATH' (got {spec!r})")
    return kind, Path(path).expanduser()


@functools.lru_cache(maxsize=4)
def _phantom_bank(kind: str, seed: int, n: int, hw: tuple[int, int]) -> tuple[Phantom, ...]:
    from segshield.utils.progress import progress

    maker = _KINDS[kind].maker
    assert maker is not None
    log.debug("generating %d %s phantoms of size %s (seed %d)", n, kind, hw, seed)
    return tuple(
        maker(hw, seed=seed, index=i) for i in progress(range(n), desc=kind, total=n, unit="img")
    )


def _phantom_samples(kind: str, seed: int, n: int, hw: tuple[int, int]) -> list[Sample]:
    bank = _phantom_bank(kind, seed, n, hw)
    width = len(str(n - 1))
    stem = kind.split("-")[1]
    return [
        Sample(f"{stem}_{seed}_{i:0{width}d}", p.image, p.mask.astype(np.int64), p.meta, hw)
        for i, p in enumerate(bank)
    ]


def load_dataset(
    spec: str,
    *,
    size: int | tuple[int, int] | None = None,
    split: str = "all",
    seed: int = 0,
    resize: str = "resize",
    n: int | None = None,
    cache: bool = False,
) -> SegDataset:
    """Load a segmentation data set by ``"KIND[:PATH]"`` (see the module table).

    Args:
        spec: ``"phantom-derm"``, ``"phantom-fundus"`` or ``"KIND:PATH"`` with KIND in
            :func:`list_kinds`.
        size: output size, int (square) or ``(H, W)``, sides in ``[8, 8192]``; ``None``
            keeps the native size (phantoms: 128). Default ``None``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``. Official split folders
            are used where the layout has them (ISIC); otherwise a seeded 70/15/15
            split. Default ``"all"``.
        seed: seed of the phantoms and of the split, ``>= 0``. Default 0.
        resize: ``"resize"`` or ``"pad"`` (pad to square, then resize; see
            :mod:`segshield.data.dataset`). Phantoms are drawn at ``size`` directly.
        n: phantoms: number of images in the whole set before splitting (default 200,
            ``>= 1``); real data: keep only the first ``n`` items of the split.
        cache: keep real-data items in memory after their first read (phantoms are
            always in memory). Default ``False``.

    Returns:
        :class:`SegDataset`; ``problems`` lists the pairs skipped while indexing.

    Raises:
        ValueError: a bad spec, size, split, policy or ``n``; or no usable pair (the
            message names the folder, what was expected and the first problems).
        FileNotFoundError: ``PATH`` or an expected sub-folder is missing.
        TypeError: arguments of the wrong type.

    Example:
        >>> ds = load_dataset("phantom-derm", size=32, split="train", n=10)
        >>> len(ds), ds[0]["image"].shape, ds.num_classes
        (7, torch.Size([3, 32, 32]), 2)
    """
    kind, root = parse_spec(spec)
    hw = parse_size(size) if size is not None else None
    check_choice("split", split, SPLITS)
    check_choice("resize", resize, RESIZE_POLICIES)
    check_number("seed", seed, low=0, integer=True)
    if n is not None:
        check_number("n", n, low=1, integer=True)
    info = _KINDS[kind]

    if info.maker is not None:
        hw = hw or (128, 128)
        samples = split_samples(_phantom_samples(kind, int(seed), int(n or 200), hw), split, seed)
        assert info.classes is not None
        # drawn at the target size: no resizing (and no padding) is needed
        return SegDataset(samples, kind=kind, size=hw, resize="resize", **info.classes)

    assert root is not None and info.index is not None
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder for {kind}; check the PATH in {spec!r}")
    found = info.index(root, split, int(seed))
    samples = found.samples[: int(n)] if n is not None else found.samples
    if not samples:
        detail = "; ".join(found.problems[:5]) or "no image files matched the layout"
        raise ValueError(
            f"{root}: no usable image/mask pairs for {kind} (split {split!r}); "
            f"expected {_EXPECTED[kind]}. Found: {detail}"
        )
    for msg in found.problems:
        log.warning("%s: %s", kind, msg)
    if found.problems:
        log.warning("%s: skipped %d problem(s) while indexing %s", kind, len(found.problems), root)
    classes = info.classes or folder.infer_classes(samples)
    return SegDataset(
        samples,
        kind=kind,
        decode=info.decode,
        size=hw,
        resize=resize,
        cache=cache,
        problems=found.problems,
        **classes,
    )


_EXPECTED = {
    "isic": "*_Training_Data or *_Training_Input with *_GroundTruth (ISIC_x.jpg + "
    "ISIC_x_segmentation.png), and likewise *_Validation_* / *_Test_*",
    "ph2": "images/IMDxxx.bmp + masks/IMDxxx_lesion.bmp, or the PH2 release layout "
    "IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp + IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp",
    "drishti": "images NAME.png with NAME_ODsegSoftmap.png and NAME_cupsegSoftmap.png",
    "refuge": "images/ and masks/ with the same stems (masks 0 cup, 128 rim, 255 background)",
    "origa": "images/ and masks/ with the same stems (masks 0/1/2)",
    "paddleseg": "images/ + masks/ or JPEGImages/ + Annotations/ with the same stems "
    "(palette masks, 1 = disc)",
    "folder": "images/ and masks/ with the same stems",
}
