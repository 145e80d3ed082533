"""Folders of real photos with masks: file-naming conventions, detection and reading.

The public sets imgtool is checked on name their files in a few ways (see
``../shared/data/README.md``); a user's own folder can follow any of them or be
described with an image glob and a mask pattern:

=============  ======================  ===========================  =========  ======
convention     image                   mask                         inside     size
=============  ======================  ===========================  =========  ======
``suffix``     ``<id>.png`` (.jpg ..)  ``<id>_mask.png``            >= 128     same
``figaro``     ``<id>-org.jpg``        ``<id>-gt.pbm``              non-zero   same
``celeba``     ``<id>.jpg``            ``<id>_hair.png``            >= 128     half
=============  ======================  ===========================  =========  ======

PAD-UFES-20 and FUSeg follow ``suffix`` (lesion masks), Figaro-1k ``figaro`` and
CelebAMask-HQ ``celeba`` (hair masks).
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from .errors import InputError, UsageError
from .io import PathLike, read_image

logger = logging.getLogger(__name__)

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class MaskConvention:
    """How a folder pairs photos with masks.

    Attributes
    ----------
    name : str
        ``"suffix"``, ``"figaro"``, ``"celeba"`` or ``"custom"``.
    image_glob : str
        Which files are photos (``fnmatch`` pattern on the file name).
    mask_pattern : str
        Mask file name, with ``{id}`` for the photo's id.
    id_suffix : str
        Part of the photo's stem that is not its id (``"-org"`` for Figaro).
    threshold : int
        A mask pixel is inside when its largest channel is at least this (0..255).
    mask_scale : float or None
        Mask size relative to the photo; None to infer it from the sizes.
    mask_class : str or None
        ``"lesion"`` or ``"hair"`` when the convention implies which class it masks.
    """

    name: str
    image_glob: str
    mask_pattern: str
    id_suffix: str = ""
    threshold: int = 128
    mask_scale: float | None = 1.0
    mask_class: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def image_id(self, image: Path) -> str:
        stem = image.stem
        return stem[: -len(self.id_suffix)] if self.id_suffix and stem.endswith(self.id_suffix) else stem

    def mask_path(self, image: Path) -> Path:
        return image.with_name(self.mask_pattern.format(id=self.image_id(image)))


#: Built-in conventions, tried in this order by :func:`detect_convention`.
CONVENTIONS: tuple[MaskConvention, ...] = (
    MaskConvention("figaro", "*-org.jpg", "{id}-gt.pbm", id_suffix="-org", threshold=1, mask_class="hair"),
    MaskConvention("celeba", "*.jpg", "{id}_hair.png", threshold=128, mask_scale=0.5, mask_class="hair"),
    MaskConvention("suffix", "*", "{id}_mask.png", threshold=128, mask_class="lesion"),
)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in _IMAGE_EXTS


def _is_mask_name(name: str) -> bool:
    stem = Path(name).stem
    return stem.endswith(("_mask", "_hair", "-gt", "_labels"))


def find_pairs(folder: PathLike, convention: MaskConvention) -> list[tuple[str, Path, Path]]:
    """Photos of ``folder`` that have a mask under ``convention``, sorted by id.

    Returns
    -------
    list of (id, image path, mask path)
    """
    root = Path(folder)
    out = []
    for p in sorted(root.iterdir()):
        if not _is_image(p) or _is_mask_name(p.name) or not fnmatch.fnmatch(p.name, convention.image_glob):
            continue
        m = convention.mask_path(p)
        if m.is_file():
            out.append((convention.image_id(p), p, m))
    return out


def detect_convention(folder: PathLike) -> MaskConvention:
    """The built-in convention under which the most photos of ``folder`` have masks.

    Raises
    ------
    InputError
        If the folder does not exist or no photo has a mask under any convention.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    best, count = None, 0
    for conv in CONVENTIONS:
        n = len(find_pairs(root, conv))
        if n > count:
            best, count = conv, n
    if best is None:
        raise InputError(
            f"{root}: no photo with a mask found (tried <id>_mask.png, <id>-org.jpg + <id>-gt.pbm, "
            "<id>.jpg + <id>_hair.png); describe the folder with --images and --mask-pattern"
        )
    logger.info("%s: %d photo/mask pairs under the %r convention", root, count, best.name)
    return best


def read_binary_mask(path: PathLike, threshold: int, shape: tuple[int, int] | None = None, scale: float | None = 1.0) -> np.ndarray:
    """Read a mask file as a bool array, resized (nearest) to ``shape`` when it is a scaled copy.

    Parameters
    ----------
    path : path-like
        Mask image (any format :func:`imgtool.io.read_image` reads; 1-bit PBM included).
    threshold : int
        Inside where the largest channel is at least this.
    shape : (H, W), optional
        The photo's size.
    scale : float or None
        Mask size relative to the photo; None accepts any size with the photo's aspect ratio.

    Returns
    -------
    (H, W) bool ndarray

    Raises
    ------
    InputError
        Unreadable mask, or a size that does not fit the photo.
    """
    arr, _ = read_image(path, min_side=1)
    mask = arr.max(axis=2) >= max(1, int(threshold))
    if shape is None or mask.shape == tuple(shape):
        return mask
    h, w = shape
    mh, mw = mask.shape
    if scale is not None:
        expect = (int(round(h * scale)), int(round(w * scale)))
        if (mh, mw) != expect:
            raise InputError(f"{path}: mask is {mw}x{mh}, expected {expect[1]}x{expect[0]} ({scale:g} of the {w}x{h} photo)")
    elif abs(mh / h - mw / w) > 0.02:
        raise InputError(f"{path}: mask is {mw}x{mh}, not a scaled copy of the {w}x{h} photo")
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def read_id_list(ids: str | None = None, split: PathLike | None = None, split_key: str | None = None) -> list[str] | None:
    """Ids to keep, from ``--ids a,b,c`` and/or a split file.

    A split file is plain text (one id per line, ``#`` comments) or JSON: a list of
    ids, or an object in which ``split_key`` (dots for nesting, e.g.
    ``splits.pad_ufes20_handmasks.test``) names the list; without a key, an object's
    ``"test"`` list is used.

    Returns
    -------
    list of str or None
        None when neither option is given.

    Raises
    ------
    UsageError
        A split file that cannot be read or does not hold a list of ids there.
    """
    out: list[str] | None = None
    if ids is not None:
        out = [s.strip() for s in ids.split(",") if s.strip()]
    if split is not None:
        p = Path(split)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{p}: cannot read split file ({exc.strerror})") from None
        listed: Any
        if p.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
            try:
                listed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{p}: not valid JSON ({exc.msg})") from None
            if isinstance(listed, dict):
                key = split_key or "test"
                for part in key.split("."):
                    if not isinstance(listed, dict) or part not in listed:
                        raise UsageError(f"{p}: no {key!r} in the split file")
                    listed = listed[part]
            if not isinstance(listed, list):
                raise UsageError(f"{p}: the split must be a list of ids")
            listed = [str(v) for v in listed]
        else:
            listed = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
            listed = [v for v in listed if v]
        out = listed if out is None else [v for v in out if v in set(listed)]
    return out


def select_ids(pairs: Sequence[tuple[str, Path, Path]], keep: Sequence[str] | None) -> list[tuple[str, Path, Path]]:
    """Keep the pairs named in ``keep`` (all when None); unknown names are an error.

    A name matches a pair by its id, its photo's file name or its photo's path as
    listed (the last path component is compared).
    """
    if keep is None:
        return list(pairs)
    names = {Path(k).name for k in keep}
    chosen = [p for p in pairs if p[0] in names or p[1].name in names or p[1].stem in names]
    known = {p[0] for p in pairs} | {p[1].name for p in pairs} | {p[1].stem for p in pairs}
    missing = sorted(n for n in names if n not in known)
    if missing:
        raise UsageError(f"{len(missing)} requested id(s) have no photo/mask pair here, e.g. {missing[:3]}")
    return chosen
