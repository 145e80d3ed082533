"""The label contract shared by every segmenter, the phantom generator and the metrics.

A label map is a single-channel ``uint8`` array (and PNG) in one photo's pixel frame:

====  ============  =========================================================
 0    background    not skin: wall, sheet, clothing, anything off the body
 1    skin          healthy (uninvolved) skin
 2    lesion        eczematous lesion (erythematous, scaly, lichenified skin)
 3    hair          hair-bearing area: where hair covers the skin, the pixel is hair
====  ============  =========================================================

Hair is a *region* label, as in hair-loss scoring (SALT) and in public hair masks:
an area whose skin is covered by hair strands is hair, including the small gaps
between strands; an alopecic patch inside it is skin (or lesion).
"""

from __future__ import annotations

import numpy as np

BACKGROUND: int = 0
SKIN: int = 1
LESION: int = 2
HAIR: int = 3

#: Class names in label order.
CLASS_NAMES: tuple[str, ...] = ("background", "skin", "lesion", "hair")
NUM_CLASSES: int = len(CLASS_NAMES)

#: Display colours (RGB) for label maps: Okabe-Ito, safe for colour-blind readers.
LABEL_COLOURS: np.ndarray = np.array(
    [
        (0, 0, 0),  # background: black
        (230, 159, 0),  # skin: orange
        (213, 94, 0),  # lesion: vermillion
        (0, 114, 178),  # hair: blue
    ],
    dtype=np.uint8,
)


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Check that ``labels`` is a 2-D label map with values in 0..3.

    Parameters
    ----------
    labels : (H, W) integer ndarray
        Label map.
    name : str
        What the array is, for error messages.

    Returns
    -------
    (H, W) uint8 ndarray
        The same labels as uint8.

    Raises
    ------
    ValueError
        If the array is not 2-D or holds values outside 0..3.
    """
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D label map (H, W), got shape {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > HAIR):
        raise ValueError(f"{name} must hold values 0..3 (background, skin, lesion, hair), got {int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.uint8, copy=False)


def colourise(labels: np.ndarray) -> np.ndarray:
    """Map a label map to an ``(H, W, 3) uint8`` RGB picture with :data:`LABEL_COLOURS`."""
    return LABEL_COLOURS[check_labels(labels)]
