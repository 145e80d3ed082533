"""Photometric normalisation of AFTER to BEFORE that keeps the disease change.

Private to :mod:`imgtool.registration`. A plain histogram match inside the skin would
make a resolved red lesion red again (the histograms differ *because* the disease
changed). Instead the colour map is fitted on corresponding pixels of the aligned pair
that did not change: healthy skin and background in both photos (when label maps are
given), and in any case only the pixels that a robust fit keeps (least trimmed squares,
then a 3-sigma re-weighting), so changed lesions and regrown hair are outliers, not data.

The model, in sRGB values 0..255, is ``c_before = g(x, y) * (M @ c_after + b)``: a 3x3
colour matrix ``M`` and offset ``b`` (white balance, exposure, camera colour response)
and, optionally, a smooth shading gain ``g = exp(quadratic in x, y)`` over BEFORE's
normalised coordinates (a light placed differently). A quadratic cannot draw a lesion,
so the shading term cannot erase one either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ._reg_global import apply_h

logger = logging.getLogger(__name__)

#: Share of the samples kept by each least-trimmed-squares step.
_LTS_KEEP = 0.7


@dataclass(frozen=True)
class PhotometricCorrection:
    """A fitted AFTER -> BEFORE colour correction.

    Attributes
    ----------
    matrix : (3, 3) float64 ndarray
        Colour matrix ``M`` (RGB in, RGB out).
    offset : (3,) float64 ndarray
        Offset ``b`` in sRGB levels.
    shading : (5,) float64 ndarray
        Coefficients of ``log g`` on ``(x, y, x^2, x y, y^2)`` in BEFORE's normalised
        coordinates (all zero when the shading term is off).
    samples : int
        Pixels the fit saw; ``inlier_fraction`` of them were kept as unchanged.
    inlier_fraction : float
        Share of the samples consistent with the fitted map.
    residual_before, residual_after : float
        Median colour distance (sRGB levels) between BEFORE and AFTER on the kept
        pixels, without and with the correction.
    """

    matrix: np.ndarray = field(compare=False)
    offset: np.ndarray = field(compare=False)
    shading: np.ndarray = field(compare=False)
    samples: int
    inlier_fraction: float
    residual_before: float
    residual_after: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "c_before = exp(shading . [x, y, x^2, xy, y^2]) * (matrix @ c_after + offset), sRGB 0..255, "
            "x, y in BEFORE's normalised coordinates",
            "matrix": [[round(float(v), 6) for v in row] for row in self.matrix],
            "offset": [round(float(v), 4) for v in self.offset],
            "shading": [round(float(v), 6) for v in self.shading],
            "samples": int(self.samples),
            "inlier_fraction": round(float(self.inlier_fraction), 4),
            "residual_before": round(float(self.residual_before), 3),
            "residual_after": round(float(self.residual_after), 3),
        }


def _basis(uv: np.ndarray) -> np.ndarray:
    u, v = uv[:, 0], uv[:, 1]
    return np.stack([u, v, u * u, u * v, v * v], axis=1)


def _fit_colour(xa: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares of ``y ~ [x, 1] @ sol`` through the 4 x 4 normal equations; ``sol`` is (4, 3).

    A slight ridge towards the identity map keeps degenerate data (a grey image, whose
    three channels are equal) solvable without changing well-posed fits.
    """
    ata = xa.T @ xa
    lam = 1e-6 * np.trace(ata) + 1e-9
    prior = np.vstack([np.eye(3), np.zeros((1, 3))])
    return np.linalg.solve(ata + lam * np.eye(4), xa.T @ y + lam * prior)


def _quantile_start(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gain and offset that match the 10..90th percentiles: a start that outliers barely move."""
    q = np.linspace(10, 90, 9)
    m = np.eye(3)
    b = np.zeros(3)
    for c in range(3):
        qa, qb = np.percentile(x[:, c], q), np.percentile(y[:, c], q)
        if np.ptp(qa) < 1e-6:
            b[c] = float(np.median(y[:, c] - x[:, c]))
            continue
        gain, off = np.polyfit(qa, qb, 1)
        m[c, c], b[c] = gain, off
    return m, b


def fit_correction(
    before: np.ndarray,
    after_aligned: np.ndarray,
    mask: np.ndarray,
    to_norm: np.ndarray,
    *,
    shading: bool = True,
    max_samples: int = 20000,
    min_samples: int = 500,
) -> PhotometricCorrection | None:
    """Fit the colour map that takes AFTER's colours to BEFORE's on unchanged pixels.

    Parameters
    ----------
    before : (h, w, 3) uint8 ndarray
        BEFORE at some working resolution.
    after_aligned : (h, w, 3) uint8 ndarray
        AFTER warped into that frame.
    mask : (h, w) bool ndarray
        Candidate pixels: inside both photos, and healthy skin or background in both
        when labels are known.
    to_norm : (3, 3) ndarray
        Map from this frame's pixels to BEFORE's normalised coordinates.
    shading : bool
        Also fit the smooth shading gain.
    max_samples : int
        Most pixels used (a regular subsample).
    min_samples : int
        Fewer usable pixels and no correction is fitted (None).

    Returns
    -------
    PhotometricCorrection or None
    """
    ok = mask & (before.min(axis=2) > 2) & (before.max(axis=2) < 253)
    ok &= (after_aligned.min(axis=2) > 2) & (after_aligned.max(axis=2) < 253)
    ys, xs = np.nonzero(ok)
    if len(ys) < min_samples:
        return None
    step = max(1, len(ys) // max_samples)
    ys, xs = ys[::step], xs[::step]
    y = before[ys, xs].astype(np.float64)
    x = after_aligned[ys, xs].astype(np.float64)
    uv = apply_h(to_norm, np.stack([xs, ys], axis=1).astype(np.float64))
    basis = _basis(uv)
    n = len(y)

    xa = np.hstack([x, np.ones((n, 1))])
    m, b = _quantile_start(x, y)
    sol = np.vstack([m.T, b])
    gain = np.ones(n)
    coef = np.zeros(5)
    keep = np.ones(n, dtype=bool)
    for it in range(8):
        pred = xa @ sol
        res = np.linalg.norm(pred * gain[:, None] - y, axis=1)
        if it < 6:  # least-trimmed-squares concentration steps
            keep = res <= np.partition(res, int(_LTS_KEEP * (n - 1)))[int(_LTS_KEEP * (n - 1))]
        else:  # then every pixel within 3 robust sigmas of the fit
            sigma = 1.4826 * float(np.median(res[keep])) + 1e-6
            keep = res < 3.0 * sigma
        if shading:
            # Log ratio of luminances on the kept pixels: the shading gain.
            lum_p, lum_y = pred[keep].mean(axis=1), y[keep].mean(axis=1)
            good = (lum_p > 5) & (lum_y > 5)
            if good.sum() > 50:
                r = np.log(lum_y[good] / lum_p[good])
                bg = basis[keep][good]
                coef = np.linalg.solve(bg.T @ bg + 1e-9 * np.eye(5), bg.T @ (r - r.mean()))
                coef = np.clip(coef, -1.0, 1.0)
                gain = np.exp(basis @ coef)
        sol = _fit_colour(xa[keep], y[keep] / gain[keep, None])
    m, b = sol[:3].T, sol[3]
    res_after = np.linalg.norm((xa @ sol) * gain[:, None] - y, axis=1)
    res_before = np.linalg.norm(x - y, axis=1)
    corr = PhotometricCorrection(
        matrix=m,
        offset=b,
        shading=coef if shading else np.zeros(5),
        samples=n,
        inlier_fraction=float(keep.mean()),
        residual_before=float(np.median(res_before[keep])),
        residual_after=float(np.median(res_after[keep])),
    )
    logger.debug("photometric: %s", corr.to_dict())
    return corr


def apply_correction(image: np.ndarray, corr: PhotometricCorrection, to_norm: np.ndarray) -> np.ndarray:
    """Apply a fitted correction to an RGB image.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        AFTER's colours, in any frame.
    corr : PhotometricCorrection
        The fitted map.
    to_norm : (3, 3) ndarray
        Map from ``image``'s pixel coordinates to BEFORE's normalised coordinates
        (where the shading gain is defined); a homography when ``image`` is in AFTER's frame.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    affine = np.hstack([corr.matrix, corr.offset[:, None]]).astype(np.float32)
    out = cv2.transform(image.astype(np.float32), affine)
    if np.any(corr.shading != 0):
        h, w = image.shape[:2]
        # The gain is smooth: evaluate it on a coarse grid and interpolate.
        gh, gw = max(2, min(h, 64)), max(2, min(w, 64))
        gx = (np.arange(gw) + 0.5) * w / gw - 0.5
        gy = (np.arange(gh) + 0.5) * h / gh - 0.5
        grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
        gain = np.exp(_basis(apply_h(to_norm, grid)) @ corr.shading).reshape(gh, gw).astype(np.float32)
        gain = cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR)
        out *= gain[:, :, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
