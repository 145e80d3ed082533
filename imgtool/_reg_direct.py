"""Direct (intensity-only) search: the fallback when keypoints do not match.

Private to :mod:`imgtool.registration`. Faint texture (dark or smooth skin, close-ups),
or a view whose keypoints changed almost everywhere, can leave too few feature matches
even though the photos plainly show the same skin. Repeat clinical photos are taken to
match, so the camera change is modest: a grid of rotations and zooms around the
identity, the translation of each found by phase correlation of coarse structure
images, and the best few polished coarse-to-fine by the robust Lucas-Kanade of
:mod:`imgtool._reg_refine`. The caller judges the result by the evidence, and never
trusts it as much as a feature consensus.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from ._reg_global import downscale, level_matrix
from ._reg_refine import Level, Template, alignment_evidence, make_template, refine, structure_image

logger = logging.getLogger(__name__)

#: Long sides of the pyramid levels the search runs on, coarse to fine.
_LEVELS = (128, 256, 512)


def _similarity(angle_deg: float, scale: float) -> np.ndarray:
    t = np.radians(angle_deg)
    c, s = scale * np.cos(t), scale * np.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _levels(
    gray: np.ndarray, labels: np.ndarray | None, norm: np.ndarray, full: tuple[int, int], size: int
) -> Level:
    small = downscale(gray, size)
    lab = None
    if labels is not None:
        lab = cv2.resize(labels, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
    return Level(structure_image(small, 2.0), level_matrix(full, small.shape) @ np.linalg.inv(norm), lab)


def direct_search(
    gray_b: np.ndarray,
    gray_a: np.ndarray,
    labels_b: np.ndarray | None,
    labels_a: np.ndarray | None,
    norm_b: np.ndarray,
    norm_a: np.ndarray,
    *,
    full_b: tuple[int, int],
    full_a: tuple[int, int],
    label_weight: float,
    angles: tuple[float, ...] = (-15.0, -7.5, 0.0, 7.5, 15.0),
    scales: tuple[float, ...] = (0.8, 0.9, 1.0, 1.11, 1.25),
    keep: int = 3,
) -> np.ndarray | None:
    """The similarity, then affine, warp that best aligns the structure of two photos.

    Parameters
    ----------
    gray_b, gray_a : (h, w) uint8 ndarray
        Grey photos at the working resolution.
    labels_b, labels_a : (h, w) uint8 ndarray or None
        Their label maps at that resolution.
    norm_b, norm_a : (3, 3) ndarray
        Full-resolution pixels -> normalised coordinates of each photo.
    full_b, full_a : (H, W)
        Full-resolution sizes.
    label_weight : float
        Weight of pixels that change by design.
    angles, scales : tuple of float
        Starting rotations (degrees) and zooms (AFTER over BEFORE, normalised units).
    keep : int
        How many of the best starts are polished.

    Returns
    -------
    (3, 3) ndarray or None
        Warp BEFORE normalised -> AFTER normalised; None when BEFORE has no texture at all.
    """
    lv_b = [_levels(gray_b, labels_b, norm_b, full_b, s) for s in _LEVELS]
    lv_a = [_levels(gray_a, labels_a, norm_a, full_a, s) for s in _LEVELS]
    tpls: list[Template] = [make_template(lv, 3000 * (i + 1), cell=8, label_weight=label_weight) for i, lv in enumerate(lv_b)]
    if min(len(t.u) for t in tpls) < 50:
        return None
    coarse_b, coarse_a = lv_b[0], lv_a[0]
    hb, wb = coarse_b.image.shape
    window = cv2.createHanningWindow((wb, hb), cv2.CV_32F)
    px = coarse_b.from_norm[0, 0]
    starts = []
    for ang in angles:
        for sc in scales:
            g0 = _similarity(ang, 1.0 / sc)  # BEFORE normalised -> AFTER normalised, about the centres
            m = coarse_a.from_norm @ g0 @ np.linalg.inv(coarse_b.from_norm)
            warped = cv2.warpPerspective(
                coarse_a.image, m, (wb, hb), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
            )
            (dx, dy), response = cv2.phaseCorrelate(coarse_b.image, warped, window)
            shift = np.array([[1.0, 0.0, dx / px], [0.0, 1.0, dy / px], [0.0, 0.0, 1.0]])
            starts.append((float(response), g0 @ shift))
    starts.sort(key=lambda s: -s[0])
    best: tuple[float, np.ndarray] | None = None
    for _, g in starts[:keep]:
        for tpl, lv in zip(tpls, lv_a):
            g = refine(tpl, lv, g, "similarity", iterations=15).g
        g = refine(tpls[-1], lv_a[-1], g, "affine", iterations=15).g
        ncc = alignment_evidence(tpls[-1], lv_a[-1], g)["ncc"]
        if best is None or ncc > best[0]:
            best = (ncc, g)
    assert best is not None
    logger.debug("direct search: best correlation %.3f", best[0])
    return best[1]
