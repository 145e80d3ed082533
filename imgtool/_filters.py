"""Small image filters shared by the pipeline stages (private)."""

from __future__ import annotations

import cv2
import numpy as np


def normalised_blur(weighted: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean of values from their weighted sum (normalised convolution).

    Parameters
    ----------
    weighted : (H, W) or (H, W, C) float32 ndarray
        The values times their weights.
    weights : (H, W) float32 ndarray
        The weights (0 where a pixel does not count).
    sigma : float
        Gaussian sigma in pixels.

    Returns
    -------
    ndarray, shaped like ``weighted``
        The weighted mean around every pixel; where the weights nearby sum to almost
        nothing, the global weighted mean.
    """
    num = cv2.GaussianBlur(weighted, (0, 0), sigma)
    den = cv2.GaussianBlur(weights, (0, 0), sigma)
    total = max(float(weights.sum()), 1e-6)
    if weighted.ndim == 2:
        glob: float | np.ndarray = float(weighted.sum() / total)
    else:
        glob = weighted.reshape(-1, weighted.shape[2]).sum(axis=0) / total
        den = den[..., None]
    return np.where(den > 1e-3, num / np.maximum(den, 1e-6), glob)


def remove_small_components(mask: np.ndarray, min_area: float) -> np.ndarray:
    """The 8-connected components of ``mask`` with at least ``min_area`` pixels.

    Parameters
    ----------
    mask : (H, W) bool or integer ndarray
        Non-zero where the mask is set.
    min_area : float
        Smallest component, in pixels, that is kept.

    Returns
    -------
    (H, W) bool ndarray
    """
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[comp]
