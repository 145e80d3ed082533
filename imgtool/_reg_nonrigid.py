"""Optional non-rigid refinement: a smooth displacement field after the homography.

Private to :mod:`imgtool.registration`. A homography is exact only for a flat surface
(or a camera that only rotated); a back or a leg photographed twice is curved and the
patient breathes and shifts. The residual motion is measured by dense optical flow (DIS)
between BEFORE and the homography-aligned AFTER, both as structure images so that
lighting does not count as motion, and then regularised: pixels that change by design
(lesions, hair; low photo-consistency; no texture) get no say, and the field is the
normalised convolution of the trusted flow with a wide Gaussian, clipped in magnitude.

Convention: the field ``d`` lives on BEFORE's frame, in BEFORE full-resolution pixels.
BEFORE pixel ``x`` shows the body point that the homography-aligned AFTER shows at
``x + d(x)``; in AFTER's own pixels that is ``inv(H) (x + d(x))``.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: How to read the field, stored with it.
CONVENTION = (
    "dx, dy: displacement in BEFORE full-resolution pixels on a grid over BEFORE's frame "
    "(grid pixel centres map as a resize does: x_grid + 0.5 = (w_grid / W) (x + 0.5)); "
    "BEFORE pixel x shows what the homography-aligned AFTER shows at x + d(x), i.e. AFTER pixel inv(H) (x + d(x))."
)


@dataclass(frozen=True)
class Displacement:
    """Residual displacement after the homography, sampled on a grid over BEFORE's frame.

    Attributes
    ----------
    field : (2, h, w) float32 ndarray
        ``dx`` and ``dy`` in BEFORE full-resolution pixels, on a grid of ``(h, w)``
        samples whose pixel centres map to BEFORE's as a resize does
        (``x_grid + 0.5 = (w / W) (x + 0.5)``).
    before_shape : (H, W)
        BEFORE's full-resolution size.
    """

    field: np.ndarray = field(compare=False, repr=False)
    before_shape: tuple[int, int]

    def full_resolution(self) -> np.ndarray:
        """The field at every BEFORE pixel, ``(2, H, W) float32`` (bilinear upsampling)."""
        h, w = self.before_shape
        return np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in self.field])

    def magnitude_stats(self) -> dict[str, float]:
        """Mean, 95th percentile and maximum of the displacement length, in BEFORE pixels."""
        mag = np.hypot(self.field[0], self.field[1])
        return {
            "mean_px": round(float(mag.mean()), 3),
            "p95_px": round(float(np.percentile(mag, 95)), 3),
            "max_px": round(float(mag.max()), 3),
        }

    def to_npz_bytes(self, homography: np.ndarray) -> bytes:
        """The field as a compressed ``.npz`` (``dx``, ``dy``, ``before_shape``, ``homography``, ``convention``)."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            dx=self.field[0],
            dy=self.field[1],
            before_shape=np.array(self.before_shape, dtype=np.int64),
            homography=np.asarray(homography, dtype=np.float64),
            convention=np.array(CONVENTION),
        )
        return buf.getvalue()

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> Displacement:
        """Read a field written by :meth:`to_npz_bytes` (e.g. ``OUT/displacement.npz``)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(np.stack([z["dx"], z["dy"]]).astype(np.float32), (int(z["before_shape"][0]), int(z["before_shape"][1])))

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid_shape": [int(self.field.shape[1]), int(self.field.shape[2])],
            "before_shape": [int(self.before_shape[0]), int(self.before_shape[1])],
            **self.magnitude_stats(),
        }


def _to_u8(struct: np.ndarray) -> np.ndarray:
    return np.clip(struct * 40.0 + 128.0, 0, 255).astype(np.uint8)


def estimate_displacement(
    before_struct: np.ndarray,
    after_struct: np.ndarray,
    weight: np.ndarray,
    before_shape: tuple[int, int],
    *,
    smooth_frac: float = 0.04,
    max_frac: float = 0.03,
    grid_size: int = 256,
) -> tuple[Displacement, dict[str, float]]:
    """Dense, regularised residual motion between BEFORE and the aligned AFTER.

    Parameters
    ----------
    before_struct : (h, w) float32 ndarray
        BEFORE's structure image at the flow level.
    after_struct : (h, w) float32 ndarray
        AFTER's structure image warped into that frame by the homography.
    weight : (h, w) float32 ndarray
        Prior trust per pixel (0 outside AFTER's coverage, low on lesions and hair).
    before_shape : (H, W)
        BEFORE's full-resolution size.
    smooth_frac : float
        Gaussian regularisation scale as a fraction of the level's long side.
    max_frac : float
        Displacements are clipped to this fraction of the long side.
    grid_size : int
        Long side of the grid the field is kept on.

    Returns
    -------
    Displacement
        The regularised field (BEFORE full-resolution pixels).
    dict
        ``trusted_fraction``: share of covered pixels whose flow was trusted; ``kept``:
        the share of the regularised field kept (0 when it did not bring the photos closer).
    """
    h, w = before_struct.shape
    b8, a8 = _to_u8(before_struct), _to_u8(after_struct)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(b8, a8, None)
    back = dis.calc(a8, b8, None)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    # Forward-backward consistency: where the skin changed (hair grew, a lesion went), the
    # two flows disagree, and the flow there is no evidence of motion.
    fb = flow + cv2.remap(back, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    consistent = np.exp(-(np.hypot(fb[..., 0], fb[..., 1]) / 1.0) ** 2)
    # Photo-consistency after the flow, and texture in both photos to lock the flow.
    warped = cv2.remap(after_struct, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    resid = cv2.GaussianBlur(np.abs(warped - before_struct), (0, 0), 2.0)
    consistent *= np.exp(-((resid / 0.5) ** 2))
    texture = np.minimum(_texture(before_struct), _texture(after_struct))
    conf = (weight * consistent * texture).astype(np.float32)
    sigma = smooth_frac * max(h, w)
    lim = max_frac * max(h, w)
    smooth = _regularise(flow, conf, sigma, lim)
    # Keep the field only as far as it predicts motion where it was not fitted: fields
    # fitted on one half of a checkerboard of blocks are scored on the other half. On a
    # pair that did not bend, what the flow found is noise and does not carry over.
    block = max(8, int(round(1.5 * sigma)))
    half = (((gx // block) + (gy // block)) % 2 == 0).astype(np.float32)
    fields = (_regularise(flow, conf * half, sigma, lim), _regularise(flow, conf * (1 - half), sigma, lim))
    scored = (weight > 0.5) & (texture > 0.5)
    gain = _held_out_gain(before_struct, after_struct, fields, (scored & (half == 0), scored & (half == 1)), gx, gy)
    smooth *= gain
    # Level pixels -> BEFORE full-resolution pixels.
    smooth[0] *= before_shape[1] / w
    smooth[1] *= before_shape[0] / h
    # The field is smooth at the scale sigma: a coarser grid holds it (and keeps files small).
    f = max(1.0, max(h, w) / grid_size)
    if f > 1.0:
        size = (max(2, round(w / f)), max(2, round(h / f)))
        smooth = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in smooth])
    covered = weight > 0
    trusted = float((conf[covered] > 0.25).mean()) if covered.any() else 0.0
    return Displacement(smooth.astype(np.float32), (int(before_shape[0]), int(before_shape[1]))), {
        "trusted_fraction": round(trusted, 4),
        "kept": round(gain, 2),
    }


def _texture(struct: np.ndarray) -> np.ndarray:
    """0..1: how much local structure a structure image has (smoothed Laplacian magnitude)."""
    t = cv2.GaussianBlur(np.abs(cv2.Laplacian(struct, cv2.CV_32F)), (0, 0), 2.0)
    return np.clip(t / 0.5, 0.0, 1.0)


def _regularise(flow: np.ndarray, conf: np.ndarray, sigma: float, limit: float) -> np.ndarray:
    """Normalised convolution of the trusted flow, faded where evidence is thin, clipped to ``limit``."""
    h, w = conf.shape
    den = cv2.GaussianBlur(conf, (0, 0), sigma)
    out = np.zeros((2, h, w), dtype=np.float32)
    for c in range(2):
        num = cv2.GaussianBlur(flow[..., c] * conf, (0, 0), sigma)
        out[c] = np.where(den > 1e-3, num / np.maximum(den, 1e-6), 0.0)
    # Fade to zero where there is no evidence nearby, instead of extrapolating.
    out *= np.clip(den / 0.05, 0.0, 1.0)[None]
    mag = np.hypot(out[0], out[1])
    out *= np.minimum(1.0, limit / np.maximum(mag, 1e-6))[None]
    return out


def _held_out_gain(
    before: np.ndarray,
    after: np.ndarray,
    fields: tuple[np.ndarray, np.ndarray],
    scored: tuple[np.ndarray, np.ndarray],
    gx: np.ndarray,
    gy: np.ndarray,
) -> float:
    """The share (0, 1/2 or 1) of the field that best aligns held-out pixels (median residual).

    ``fields[i]`` was fitted without the pixels ``scored[i]``, where it is scored.
    """
    if min(m.sum() for m in scored) < 100:
        return 0.0
    best, best_res = 0.0, np.inf
    for g in (0.0, 0.5, 1.0):
        res = 0.0
        for field, mask in zip(fields, scored):
            warped = cv2.remap(after, gx + g * field[0], gy + g * field[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            res += float(np.median(np.abs(warped - before)[mask]))
        # A larger share must earn its place by a clear margin (1 %).
        if res < best_res * (0.99 if g > 0 else 1.0):
            best, best_res = g, res
    return best
