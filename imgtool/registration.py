"""Registration of the AFTER photo onto the BEFORE photo.

Convention (the output contract): the homography ``H`` maps AFTER pixel coordinates to
BEFORE pixel coordinates, ``[x_b, y_b, 1] ~ H @ [x_a, y_a, 1]``, with x to the right,
y down and pixel centres at integer coordinates, on the EXIF-oriented full-resolution
images. Warping AFTER into BEFORE's frame is ``cv2.warpPerspective(after, H, (W_b, H_b))``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .io import ImageSource, as_image

logger = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_LOW = "low_confidence"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class RegistrationOptions:
    """Settings of :func:`register`.

    Attributes
    ----------
    working_size : int
        Long side, in pixels, of the downscaled images that features are found on.
    max_features : int
        Most keypoints kept per image.
    ratio : float
        Lowe's ratio test threshold for matches.
    ransac_threshold : float
        Inlier threshold of the robust estimator, in working-resolution pixels.
    min_inliers : int
        Fewer inliers than this and the registration fails.
    ok_inliers : int
        At least this many inliers (and the other checks) for status ``ok``.
    """

    working_size: int = 1024
    max_features: int = 5000
    ratio: float = 0.8
    ransac_threshold: float = 3.0
    min_inliers: int = 15
    ok_inliers: int = 40


@dataclass(frozen=True)
class Registration:
    """Result of registering AFTER onto BEFORE.

    Attributes
    ----------
    status : str
        ``"ok"``, ``"low_confidence"`` or ``"failed"``.
    reason : str
        Why the status is what it is, in words.
    homography : (3, 3) float64 ndarray or None
        AFTER -> BEFORE pixel mapping; None when registration failed.
    method : str
        The pipeline that produced it.
    inlier_count : int
        Feature matches consistent with the transform.
    quality : dict
        Measured evidence: ``score`` (0..1), ``inlier_ratio``, ``match_count``,
        ``scale``, ``overlap`` and stage timings.
    before_shape, after_shape : (H, W)
        Sizes of the two oriented images.
    """

    status: str
    reason: str
    homography: np.ndarray | None = field(compare=False)
    method: str
    inlier_count: int
    quality: dict[str, Any]
    before_shape: tuple[int, int]
    after_shape: tuple[int, int]

    @property
    def aligned(self) -> bool:
        """True when the homography can be used (status is not ``failed``)."""
        return self.status != STATUS_FAILED and self.homography is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "homography": None if self.homography is None else [[float(v) for v in row] for row in self.homography],
            "method": self.method,
            "inlier_count": int(self.inlier_count),
            "quality": dict(self.quality),
        }


# --------------------------------------------------------------------------- geometry helpers


def map_points(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a homography to points.

    Parameters
    ----------
    h : (3, 3) ndarray
        Homography.
    points : (N, 2) ndarray
        ``(x, y)`` coordinates.

    Returns
    -------
    (N, 2) float64 ndarray
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    hom = np.hstack([pts, np.ones((len(pts), 1))]) @ np.asarray(h, dtype=np.float64).T
    return hom[:, :2] / hom[:, 2:3]


def image_corners(shape: tuple[int, int]) -> np.ndarray:
    """The four corner pixel centres ``(x, y)`` of an image of ``shape`` (H, W)."""
    h, w = shape[:2]
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)


def corner_error(h_est: np.ndarray, h_true: np.ndarray, after_shape: tuple[int, int]) -> float:
    """Mean distance in BEFORE pixels between AFTER's four corners mapped by two homographies."""
    c = image_corners(after_shape)
    return float(np.linalg.norm(map_points(h_est, c) - map_points(h_true, c), axis=1).mean())


def local_scale(h: np.ndarray, point: tuple[float, float]) -> float:
    """Linear scale factor (AFTER px -> BEFORE px) of a homography at an AFTER point.

    The square root of the Jacobian determinant: a length of 1 AFTER pixel near
    ``point`` is about this many BEFORE pixels.
    """
    x, y = point
    hm = np.asarray(h, dtype=np.float64)
    w = hm[2, 0] * x + hm[2, 1] * y + hm[2, 2]
    u = hm[0, 0] * x + hm[0, 1] * y + hm[0, 2]
    v = hm[1, 0] * x + hm[1, 1] * y + hm[1, 2]
    j = np.array(
        [
            [(hm[0, 0] * w - u * hm[2, 0]) / w**2, (hm[0, 1] * w - u * hm[2, 1]) / w**2],
            [(hm[1, 0] * w - v * hm[2, 0]) / w**2, (hm[1, 1] * w - v * hm[2, 1]) / w**2],
        ]
    )
    return float(np.sqrt(abs(np.linalg.det(j))))


def warp_to_before(
    image: np.ndarray,
    h: np.ndarray,
    before_shape: tuple[int, int],
    *,
    nearest: bool = False,
    border_value: int = 0,
) -> np.ndarray:
    """Warp an AFTER-frame image or label map into BEFORE's frame.

    Parameters
    ----------
    image : (H_a, W_a) or (H_a, W_a, C) ndarray
        Image, label map or mask in AFTER's frame.
    h : (3, 3) ndarray
        AFTER -> BEFORE homography.
    before_shape : (H_b, W_b)
        Output size.
    nearest : bool
        Nearest-neighbour sampling (for label maps and masks); else bilinear.
    border_value : int
        Value outside AFTER's coverage.

    Returns
    -------
    ndarray of BEFORE's size and ``image``'s dtype
    """
    hb, wb = before_shape[:2]
    src = image.astype(np.uint8) if image.dtype == np.bool_ else image
    out = cv2.warpPerspective(
        src,
        np.asarray(h, dtype=np.float64),
        (int(wb), int(hb)),
        flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )
    return out.astype(bool) if image.dtype == np.bool_ else out


def warp_to_after(
    image: np.ndarray,
    h: np.ndarray,
    after_shape: tuple[int, int],
    *,
    nearest: bool = False,
    border_value: int = 0,
) -> np.ndarray:
    """Warp a BEFORE-frame image or mask into AFTER's frame (the inverse of :func:`warp_to_before`)."""
    return warp_to_before(image, np.linalg.inv(np.asarray(h, dtype=np.float64)), after_shape, nearest=nearest, border_value=border_value)


def coverage_mask(h: np.ndarray, after_shape: tuple[int, int], before_shape: tuple[int, int]) -> np.ndarray:
    """Pixels of BEFORE's frame that the AFTER photo covers, as an ``(H_b, W_b)`` bool mask."""
    ones = np.ones(after_shape[:2], dtype=np.uint8)
    return warp_to_before(ones, h, before_shape, nearest=True, border_value=0).astype(bool)


# --------------------------------------------------------------------------- registration


def _working_gray(image: np.ndarray, working_size: int) -> tuple[np.ndarray, float]:
    """Downscaled, contrast-normalised grey image and its scale (working / full)."""
    h, w = image.shape[:2]
    s = min(1.0, working_size / max(h, w))
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else image
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    # CLAHE evens out lighting so that features match across exposures.
    gray = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)
    sx = gray.shape[1] / w
    sy = gray.shape[0] / h
    return gray, (sx + sy) / 2


def _full_res_homography(h_work: np.ndarray, s_before: float, s_after: float) -> np.ndarray:
    # Working coords are full coords times s (pixel centres: x_w + 0.5 = s (x + 0.5)).
    def to_work(s: float) -> np.ndarray:
        return np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1.0]])

    h = np.linalg.inv(to_work(s_before)) @ h_work @ to_work(s_after)
    return h / h[2, 2]


def register(
    before: ImageSource,
    after: ImageSource,
    *,
    options: RegistrationOptions | None = None,
) -> Registration:
    """Register AFTER onto BEFORE with features and a robust homography.

    Parameters
    ----------
    before, after : path-like or (H, W, 3) uint8 ndarray
        The month-0 and the follow-up photo of one view.
    options : RegistrationOptions, optional
        Settings; defaults are tuned for clinical repeat photos.

    Returns
    -------
    Registration
        Homography AFTER -> BEFORE, status and evidence. A pair that cannot be aligned
        is a result with ``status == "failed"``, not an exception.

    Raises
    ------
    InputError
        If an image cannot be read.
    """
    opts = options or RegistrationOptions()
    img_b, _ = as_image(before)
    img_a, _ = as_image(after)
    t0 = time.perf_counter()
    gb, sb = _working_gray(img_b, opts.working_size)
    ga, sa = _working_gray(img_a, opts.working_size)
    sift = cv2.SIFT_create(nfeatures=opts.max_features)
    kb, db = sift.detectAndCompute(gb, None)
    ka, da = sift.detectAndCompute(ga, None)
    shapes = dict(before_shape=img_b.shape[:2], after_shape=img_a.shape[:2])
    method = "sift+magsac"

    def failed(reason: str, inliers: int = 0, **quality: Any) -> Registration:
        q = {"score": 0.0, **quality, "time_s": round(time.perf_counter() - t0, 4)}
        return Registration(STATUS_FAILED, reason, None, method, inliers, q, **shapes)

    if db is None or da is None or len(kb) < 4 or len(ka) < 4:
        return failed("too few features in one of the images (blank or featureless?)", match_count=0)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    knn = matcher.knnMatch(da, db, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < opts.ratio * m[1].distance]
    if len(good) < opts.min_inliers:
        return failed(f"only {len(good)} feature matches (need {opts.min_inliers}); unrelated photos?", match_count=len(good))
    pa = np.float32([ka[m.queryIdx].pt for m in good])
    pb = np.float32([kb[m.trainIdx].pt for m in good])
    hw, mask = cv2.findHomography(pa, pb, cv2.USAC_MAGSAC, opts.ransac_threshold, confidence=0.999, maxIters=10000)
    if hw is None or mask is None:
        return failed("no consistent transform among the matches", match_count=len(good))
    inliers = int(mask.sum())
    ratio = inliers / len(good)
    h = _full_res_homography(hw, sb, sa)
    centre = ((img_a.shape[1] - 1) / 2, (img_a.shape[0] - 1) / 2)
    scale = local_scale(h, centre)
    overlap = float(coverage_mask(h, img_a.shape[:2], img_b.shape[:2]).mean())
    quality = {
        "inlier_ratio": round(ratio, 4),
        "match_count": len(good),
        "scale": round(scale, 4),
        "overlap": round(overlap, 4),
    }
    if inliers < opts.min_inliers:
        return failed(f"only {inliers} inliers (need {opts.min_inliers})", inliers, **quality)
    if not (0.25 <= scale <= 4.0) or overlap < 0.1:
        return failed(f"implausible transform (scale {scale:.2f}, overlap {overlap:.2f})", inliers, **quality)
    score = float(np.clip(min(inliers / (2 * opts.ok_inliers), 1.0) * min(ratio / 0.5, 1.0), 0, 1))
    quality = {"score": round(score, 4), **quality, "time_s": round(time.perf_counter() - t0, 4)}
    if inliers >= opts.ok_inliers and ratio >= 0.2:
        status, reason = STATUS_OK, f"{inliers} inliers ({ratio:.0%} of matches)"
    else:
        status, reason = STATUS_LOW, f"few inliers: {inliers} ({ratio:.0%} of matches)"
    return Registration(status, reason, h, method, inliers, quality, **shapes)
