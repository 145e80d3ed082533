"""Real photo sets with one-class masks, as laid out in ``../shared/data``.

A folder holds photos and masks side by side; the naming conventions of the
shared sets are recognised (:data:`MASK_CONVENTIONS`): ``<id>.png`` +
``<id>_mask.png`` (PAD-UFES-20, FUSeg), ``<id>-org.jpg`` + ``<id>-gt.pbm``
(Figaro-1k), ``<id>.jpg`` + ``<id>_hair.png`` (CelebAMask-HQ, mask at half size).
A mask pixel is positive where its grey value is at least 128 (1-bit masks
count as 0/255); a mask of another size is resized to the photo (nearest).
Each set supervises only its own class (``lesion`` or ``hair``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import InputError
from ..io import read_image

#: (mask suffix, photo suffix) pairs: a file ``<id><mask suffix>`` is the mask of ``<id><photo suffix>``.
MASK_CONVENTIONS: tuple[tuple[str, str], ...] = (
    ("_mask.png", ".png"),
    ("-gt.pbm", "-org.jpg"),
    ("_hair.png", ".jpg"),
)


@dataclass(frozen=True)
class MaskedPhoto:
    """One photo of a real set and its mask file.

    Attributes
    ----------
    id : str
        File id (the name without the convention's suffix).
    image : Path
        The photo.
    mask : Path
        Its mask.
    """

    id: str
    image: Path
    mask: Path


def list_masked_photos(folder: str | os.PathLike) -> list[MaskedPhoto]:
    """Photos with masks in ``folder``, sorted by id.

    Raises
    ------
    InputError
        The folder does not exist or holds no photo-mask pair.
    """
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d} is not a folder")
    found: dict[str, MaskedPhoto] = {}
    for mask_suffix, image_suffix in MASK_CONVENTIONS:
        for mask in d.glob(f"*{mask_suffix}"):
            ident = mask.name[: -len(mask_suffix)]
            image = d / f"{ident}{image_suffix}"
            if image.is_file() and ident not in found:
                found[ident] = MaskedPhoto(ident, image, mask)
    if not found:
        raise InputError(f"{d} holds no photo with a mask in a known naming convention")
    return [found[k] for k in sorted(found)]


def read_masked_photo(item: MaskedPhoto) -> tuple[np.ndarray, np.ndarray]:
    """Read a photo and its mask.

    Returns
    -------
    ((H, W, 3) uint8 ndarray, (H, W) bool ndarray)
        RGB photo and positive mask at the photo's size.
    """
    image, _ = read_image(item.image)
    try:
        with Image.open(item.mask) as m:
            mask = np.asarray(m.convert("L")) >= 128
    except OSError as exc:
        raise InputError(f"{item.mask}: cannot read mask: {exc}") from None
    if mask.shape != image.shape[:2]:
        mask = cv2.resize(mask.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return image, mask
