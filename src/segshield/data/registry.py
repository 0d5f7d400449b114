"""``load_dataset("KIND[:PATH]")``: the registry of data-set kinds (phantoms and layouts).

Kinds and their masks (docs/ALGORITHMS.md §1, §6):

| kind | PATH | classes | regions |
| --- | --- | --- | --- |
| ``phantom-derm`` | none | background, lesion | lesion (1) |
| ``phantom-fundus`` | none | background, rim, cup | disc (1, 2), cup (2) |
| ``phantom-fundus-roi`` | none | the same, disc-centred crop | disc (1, 2), cup (2) |
| ``isic`` | ISIC 2016-2018 Task 1 root | background, lesion | lesion (1) |
| ``ph2`` | PH2 root | background, lesion | lesion (1) |
| ``drishti`` | Drishti-GS1 root | background, rim, cup | disc (1, 2), cup (2) |
| ``refuge`` | ``images/`` + ``masks/`` (0 cup, 128 rim, 255 bg) | bg, rim, cup | disc, cup |
| ``origa`` | ``images/`` + ``masks/`` (0/1/2) | background, rim, cup | disc, cup |
| ``paddleseg`` | ``images/`` + ``masks/`` or PaddleSeg's folders | background, disc | disc (1) |
| ``folder`` | ``images/`` + ``masks/`` | inferred | foreground (1..K-1) |

A file layout may take options after its path, ``KIND:PATH,key=value,...`` (trailing
``key=value`` parts; the path itself may hold commas). Only ``folder`` has options:
``binarize=T`` and ``names=A/B/...`` (see :mod:`segshield.data.folder`).

Phantoms are generated once per ``(kind, seed, n, size)`` and kept in memory (the
last four such sets); their split uses the same 70/15/15 seeded rule as real data
sets without official split folders (see ``segshield.data._pairs``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segshield._checks import check_choice, check_number
from segshield._spec import parse_typed
from segshield.data import drishti, folder, isic, origa, paddleseg, ph2, refuge
from segshield.data._pairs import SPLITS, Index, split_samples
from segshield.data.dataset import RESIZE_POLICIES, MaskDecoder, Sample, SegDataset
from segshield.data.errors import DatasetError, MissingFolderError
from segshield.data.phantom_derm import Phantom, make_derm_phantom, parse_size
from segshield.data.phantom_fundus import make_fundus_phantom

__all__ = ["load_dataset", "list_kinds", "kind_classes", "parse_spec"]

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
    "phantom-fundus-roi": Kind(
        None, None, DISC_CUP, functools.partial(make_fundus_phantom, view="roi")
    ),
}


def list_kinds() -> list[str]:
    """Names accepted as ``KIND`` in :func:`load_dataset`.

    Example:
        >>> "isic" in list_kinds()
        True
    """
    return list(_KINDS)


def kind_classes(kind: str) -> tuple[str, ...] | None:
    """The class names of a kind's masks, or ``None`` where they are inferred (``folder``).

    Raises:
        ValueError: an unknown kind (the valid ones are listed).

    Example:
        >>> kind_classes("isic"), kind_classes("folder")
        (('background', 'lesion'), None)
    """
    check_choice("kind", kind, _KINDS)
    classes = _KINDS[kind].classes
    return None if classes is None else tuple(classes["class_names"])


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """Split ``"KIND[:PATH[,key=value,...]]"`` into the kind and an optional path.

    The options are checked too (see :func:`parse_options`), so a bad spec fails here,
    before any file is read.

    Raises:
        TypeError: ``spec`` is not a string.
        ValueError: unknown kind (the valid ones are listed), a path given to a phantom,
            no path given to a file layout, or a bad option.

    Example:
        >>> parse_spec("folder:/data/fundus,binarize=127")
        ('folder', PosixPath('/data/fundus'))
    """
    kind, path, _ = _parse(spec)
    return kind, path


def parse_options(spec: str) -> dict:
    """The options of a data spec, typed: ``binarize`` (int) and ``names`` (tuple of str).

    Raises:
        TypeError, ValueError: as :func:`parse_spec`.

    Example:
        >>> parse_options("folder:/d,binarize=127,names=bg/disc")
        {'binarize': 127, 'names': ('bg', 'disc')}
    """
    return _parse(spec)[2]


_OPTION = re.compile(r"\s*[A-Za-z_]\w*\s*=.*", re.DOTALL)
#: kind -> option -> what it expects (for messages)
_OPTIONS = {"folder": {"binarize": "an integer threshold 0..254", "names": "A/B/... (2+ names)"}}


def _parse(spec: str) -> tuple[str, Path | None, dict]:
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
        return kind, None, {}
    parts = path.split(",")
    raw: list[str] = []
    while len(parts) > 1 and _OPTION.fullmatch(parts[-1]):
        raw.insert(0, parts.pop())
    path = ",".join(parts)
    if not path.strip():
        raise ValueError(f"spec: {kind} needs a folder, as '{kind}:PATH' (got {spec!r})")
    return kind, Path(path).expanduser(), _typed_options(kind, raw, spec)


def _typed_options(kind: str, raw: list[str], spec: str) -> dict:
    allowed = _OPTIONS.get(kind, {})
    out: dict = {}
    for part in raw:
        key, _, text = (t.strip() for t in part.partition("="))
        if key not in allowed:
            valid = ", ".join(f"{k}=" for k in allowed) or "none"
            raise ValueError(
                f"spec: unknown option {key!r} for {kind} in {spec!r}; options of {kind}: {valid}"
            )
        if key in out:
            raise ValueError(f"spec: option {key!r} given twice in {spec!r}")
        bad = f"spec: {key}={text!r} in {spec!r}; expected {allowed[key]}"
        if key == "binarize":
            try:
                value = parse_typed(text, (int,))
            except ValueError as exc:
                raise ValueError(bad) from exc
            if not 0 <= value <= 254:
                raise ValueError(bad)
        else:
            value = tuple(n.strip() for n in text.split("/"))
            if len(value) < 2 or not all(value) or len(set(value)) < len(value):
                raise ValueError(bad + ", distinct and non-empty")
        out[key] = value
    return out


def _guess_kind(root: Path) -> str | None:
    """The layout ``root`` looks like (cheap checks of its top level), or None."""
    if not root.is_dir():
        return None
    if isic.find_split_folders(root):
        return "isic"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    if (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir():
        return "paddleseg"
    if any(p.is_dir() and re.fullmatch(r"IMD\d+", p.name) for p in root.iterdir()):
        return "ph2"
    return None


def _index(kind: str, root: Path, split: str, seed: int) -> Index:
    """Index a file layout; a missing folder error names the layout ``root`` looks like."""
    info = _KINDS[kind]
    assert info.index is not None
    if not root.exists():
        raise MissingFolderError(
            f"{root}: no such folder for {kind}; check the PATH of the data spec"
        )
    try:
        return info.index(root, split, seed)
    except MissingFolderError as exc:
        guess = _guess_kind(root)
        if guess is None or guess == kind:
            raise
        raise MissingFolderError(
            f"{exc}; {root} looks like the {guess} layout: use the data spec '{guess}:{root}'"
        ) from None


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
        :class:`SegDataset`; ``problems`` lists the pairs skipped while indexing (and, for
        ``folder``, more than 8 inferred classes without ``names``).

    Raises:
        ValueError: a bad spec, size, split, policy or ``n``; or no usable pair (the
            message names the folder, what was expected and the first problems).
        DatasetError: no usable pair, or masks that look lossy-compressed (``folder``
            without ``binarize``); the message names the folder or file and the fix.
        MissingFolderError: ``PATH`` or an expected sub-folder is missing (a
            ``FileNotFoundError`` and a ``DatasetError``).
        TypeError: arguments of the wrong type.

    Example:
        >>> ds = load_dataset("phantom-derm", size=32, split="train", n=10)
        >>> len(ds), ds[0]["image"].shape, ds.num_classes
        (7, torch.Size([3, 32, 32]), 2)
    """
    kind, root, options = _parse(spec)
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

    assert root is not None
    found = _index(kind, root, split, int(seed))
    samples = found.samples[: int(n)] if n is not None else found.samples
    if not samples:
        detail = "; ".join(found.problems[:5]) or "no image files matched the layout"
        raise DatasetError(
            f"{root}: no usable image/mask pairs for {kind} (split {split!r}); "
            f"expected {_EXPECTED[kind]}. Found: {detail}"
        )
    problems = list(found.problems)
    decode = info.decode
    if kind == "folder":
        decode = folder.folder_decoder(options.get("binarize"))
        classes = folder.infer_classes(samples, decode, options.get("names"))
        problems += _many_classes(root, classes["class_names"], options)
    else:
        assert info.classes is not None
        classes = info.classes
    for msg in problems:
        log.warning("%s: %s", kind, msg)
    if found.problems:
        log.warning("%s: skipped %d problem(s) while indexing %s", kind, len(found.problems), root)
    return SegDataset(
        samples,
        kind=kind,
        decode=decode,
        size=hw,
        resize=resize,
        cache=cache,
        problems=problems,
        **classes,
    )


def _many_classes(root: Path, class_names: tuple[str, ...], options: dict) -> list[str]:
    """A problem message when more than a handful of classes was inferred without names."""
    k = len(class_names)
    if "names" in options or k <= folder.MANY_CLASSES:
        return []
    return [
        f"{root}: the masks hold class ids up to {k - 1} ({k} classes) and no class names "
        "were given; if the masks are grey-level pictures (e.g. 0/255 saved with other "
        "values), add ',binarize=127' to the data spec; if they hold class ids, name the "
        "classes with ',names=background/...'"
    ]


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
