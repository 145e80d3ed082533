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
