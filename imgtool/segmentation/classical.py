"""The classical baseline segmenter: colour rules and morphology, no learning.

It is the yardstick the CNN must beat, and a fallback that needs no weights:

* skin: a YCrCb skin-colour model, cleaned by morphology, holes filled (so lesions
  and hair inside the body stay in);
* lesion: erythema, i.e. CIELAB a* above the local level of the surrounding healthy
  skin (estimated by normalised convolution, so that a lighting gradient or a
  patient's overall skin tone does not count as redness), plus darkening;
* hair: thin dark structures (morphological black-hat on lightness), turned into a
  hair-bearing region where their density is high, near skin.

It runs at a working resolution (long side ``working_size``) and the labels are
resized to the photo's size with nearest-neighbour sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from .._filters import normalised_blur, remove_small_components
from ..labels import BACKGROUND, HAIR, LESION, SKIN


@dataclass(frozen=True)
class ClassicalOptions:
    """Settings of :func:`segment_classical`.

    Attributes
    ----------
    working_size : int
        Long side in pixels of the image the rules run on.
    lesion_threshold : float
        Lesion score (a* units above local healthy skin, plus a quarter of the
        darkening in L* units) above which skin is lesion.
    hair_blackhat : float
        Black-hat response in L* units above which a pixel is a hair strand.
    hair_density : float
        Share of strand pixels in a neighbourhood above which it is hair-bearing.
    """

    working_size: int = 1024
    lesion_threshold: float = 8.0
    hair_blackhat: float = 8.0
    hair_density: float = 0.18


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _local_mean(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Weighted Gaussian mean (normalised convolution): the level of ``values`` where weight > 0."""
    return normalised_blur(values * weights, weights, sigma)


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels of an ``(H, W, 3) uint8`` RGB image (before cleaning)."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycc[..., 0], ycc[..., 1].astype(np.int16), ycc[..., 2].astype(np.int16)
    # Chai & Ngan's rule, widened a little for very light and very dark skin.
    return (cr >= 133) & (cr <= 185) & (cb >= 72) & (cb <= 135) & (y >= 25)


def segment_classical(image: np.ndarray, *, options: ClassicalOptions | None = None) -> np.ndarray:
    """Label a photo with the classical rules.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB photo.
    options : ClassicalOptions, optional
        Thresholds and working size.

    Returns
    -------
    (H, W) uint8 ndarray
        Label map: 0 background, 1 skin, 2 lesion, 3 hair.

    Raises
    ------
    ValueError
        If ``image`` is not ``(H, W, 3) uint8``.
    """
    opts = options or ClassicalOptions()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    s = min(1.0, opts.working_size / max(h, w))
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else image
    sh, sw = small.shape[:2]
    unit = max(sh, sw) / 1024.0  # morphology scales with the working image

    # --- skin
    raw = skin_mask(cv2.GaussianBlur(small, (0, 0), 1.0 * unit + 0.5))
    skin = cv2.morphologyEx(raw.astype(np.uint8), cv2.MORPH_OPEN, _disk(round(2 * unit)))
    skin = cv2.morphologyEx(skin, cv2.MORPH_CLOSE, _disk(round(6 * unit)))
    skin = ndi.binary_fill_holes(skin.astype(bool))
    skin = remove_small_components(skin, int(0.005 * sh * sw))

    # --- lesion: redness and darkening relative to the surrounding healthy skin
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lum, a_star = lab[..., 0], lab[..., 1]
    sigma = 60.0 * unit
    weights = skin.astype(np.float32)
    lesion = np.zeros_like(skin)
    for _ in range(2):  # second pass excludes the first pass's lesions from the reference
        a_ref = _local_mean(a_star, weights, sigma)
        l_ref = _local_mean(lum, weights, sigma)
        score = (a_star - a_ref) + 0.25 * np.maximum(l_ref - lum, 0.0)
        score = cv2.GaussianBlur(score, (0, 0), 2.0 * unit + 0.5)
        lesion = skin & (score > opts.lesion_threshold)
        weights = (skin & ~lesion).astype(np.float32)
    lesion = cv2.morphologyEx(lesion.astype(np.uint8), cv2.MORPH_OPEN, _disk(round(2 * unit))).astype(bool)
    lesion = remove_small_components(lesion, int(max(20, 60 * unit * unit)))

    # --- hair: dense thin dark structures near skin
    k = max(5, int(round(9 * unit)) | 1)
    l8 = np.clip(lum * 2.55, 0, 255).astype(np.uint8)
    blackhat = cv2.morphologyEx(l8, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    strands = (blackhat.astype(np.float32) / 2.55) > opts.hair_blackhat
    density = cv2.blur(strands.astype(np.float32), (max(3, int(25 * unit)),) * 2)
    near_skin = cv2.dilate(skin.astype(np.uint8), _disk(round(30 * unit))).astype(bool)
    hair = (density > opts.hair_density) & near_skin
    hair = cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_CLOSE, _disk(round(4 * unit))).astype(bool)
    hair = remove_small_components(hair, int(max(50, 400 * unit * unit)))

    labels = np.full((sh, sw), BACKGROUND, dtype=np.uint8)
    labels[skin] = SKIN
    labels[lesion] = LESION
    labels[hair] = HAIR
    if (sh, sw) != (h, w):
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    return labels
