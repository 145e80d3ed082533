"""Registration of the AFTER photo onto the BEFORE photo, and how far to trust it.

Convention (the output contract): the homography ``H`` maps AFTER pixel coordinates to
BEFORE pixel coordinates, ``[x_b, y_b, 1] ~ H @ [x_a, y_a, 1]``, with x to the right,
y down and pixel centres at integer coordinates, on the EXIF-oriented full-resolution
images. Warping AFTER into BEFORE's frame is ``cv2.warpPerspective(after, H, (W_b, H_b))``.

The method, stage by stage (details in ``docs/registration.md``):

1. *Global*: SIFT keypoints with RootSIFT descriptors on contrast-equalised grey images
   at a working resolution (never on lesions), mutual ratio-test matches, and a
   similarity, an affine map and a homography each estimated robustly (RANSAC; MAGSAC++
   for the homography). The model with the lowest GRIC wins: a more flexible model only
   where the matches need it. When the matches are too few, a *direct search* (a grid of
   rotations and zooms, phase correlation, coarse-to-fine Lucas-Kanade; see
   :mod:`imgtool._reg_direct`) may still align the photos' structure, never with more
   than ``low_confidence``.
2. *Refinement*: robust inverse-compositional Lucas-Kanade on local-contrast-normalised
   images, first at the working resolution (where a more flexible model is adopted only
   if the pixels demand it), then at a higher resolution. With label maps, lesions and
   hair that grew or was lost are down-weighted, and every pixel that still disagrees
   after alignment is down-weighted by the Geman-McClure loss.
3. *Photometric normalisation*: a colour map from AFTER to BEFORE fitted robustly on
   unchanged pixels of the aligned pair (see :mod:`imgtool._photometric`).
4. *Non-rigid refinement* (optional): a regularised dense displacement field after the
   homography (see :mod:`imgtool._reg_nonrigid`).
5. *Confidence*: checks on the evidence (keypoints, inliers, their share and spread,
   correlation of the aligned images and its peak, overlap, plausibility of the
   transform) give the status ``ok``, ``low_confidence`` or ``failed`` and the reason.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ._photometric import PhotometricCorrection, apply_correction, fit_correction
from ._reg_direct import direct_search
from ._reg_global import (
    MODELS,
    Features,
    GlobalResult,
    apply_h,
    detect,
    downscale,
    feature_gray,
    fit_global,
    level_matrix,
    normaliser,
)
from ._reg_nonrigid import Displacement, estimate_displacement
from ._reg_refine import (
    Level,
    alignment_evidence,
    change_weight,
    make_template,
    project_to_model,
    refine,
    refine_with_model_choice,
    structure_image,
)
from .errors import UsageError
from .io import ImageSource, as_image
from .labels import HAIR, LESION, check_labels

logger = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_LOW = "low_confidence"
STATUS_FAILED = "failed"

#: A photo with fewer keypoints than this has nothing to register on (blank, featureless).
_MIN_KEYPOINTS = 12

#: Verdicts of a single check, in increasing severity.
_SEVERITY = {STATUS_OK: 0, STATUS_LOW: 1, STATUS_FAILED: 2}

__all__ = [
    "STATUS_FAILED",
    "STATUS_LOW",
    "STATUS_OK",
    "Check",
    "Displacement",
    "PhotometricCorrection",
    "Registration",
    "RegistrationOptions",
    "apply_photometric",
    "corner_error",
    "coverage_mask",
    "image_corners",
    "local_scale",
    "map_points",
    "register",
    "warp_map_to_before",
    "warp_to_after",
    "warp_to_before",
]


@dataclass(frozen=True)
class RegistrationOptions:
    """Settings of :func:`register`.

    Attributes
    ----------
    working_size : int
        Long side, in pixels, of the downscaled images that features are found on
        (and the first refinement level).
    refine_size : int
        Long side of the second, finer refinement level (at most the full size).
    max_features : int
        Most keypoints kept per image.
    contrast_threshold : float
        SIFT's contrast threshold: low enough to find keypoints on faint skin texture
        (pores, fine lines) after contrast equalisation.
    ratio : float
        Lowe's ratio test threshold for matches.
    ransac_threshold : float
        Inlier threshold of the robust estimators, in working-resolution pixels.
    models : tuple of str
        Candidate motion models, from ``("similarity", "affine", "homography")``; the
        evidence picks one of them.
    min_inliers : int
        Fewer inliers than this and the registration fails.
    ok_inliers : int
        At least this many inliers (and the other checks) for status ``ok``.
    refine : bool
        Run the intensity-based refinement.
    refine_points : int
        Most points the refinement uses per level.
    label_weight : float
        Weight (0..1), when label maps are given, of pixels that change by design (a
        lesion in either photo; hair in one photo only) in the refinement and the
        non-rigid field.
    photometric : bool
        Fit the AFTER -> BEFORE colour correction.
    shading : bool
        Include the smooth shading gain in the colour correction.
    nonrigid : bool
        Estimate the residual displacement field after the homography.
    nonrigid_size : int
        Long side of the level the displacement field is estimated on.
    min_overlap, ok_overlap : float
        Share of BEFORE that AFTER must cover: below the first the registration fails,
        below the second its confidence is low.
    scale_limits : (float, float)
        Plausible range of the zoom change (normalised for image size); outside it
        the registration fails.
    max_anisotropy : (float, float)
        Ratio of the transform's principal stretches (shear, tilt) above which the
        confidence is low, and above which it fails.
    max_perspective : (float, float)
        Ratio of the largest to the smallest local scale over AFTER's corners above
        which the confidence is low, and above which it fails.
    min_peak : (float, float)
        Correlation peak of the aligned structure images (see :func:`register`)
        below which the confidence is low, and below which it fails unless the
        matches alone are conclusive (``strong_inliers``).
    min_spread : (float, float)
        Area of the inliers' convex hull, as a share of the area the photos share,
        below which the confidence is low, and below which it fails (unless the
        matches are conclusive).
    direct_search : bool
        When feature matches are too few, search directly for the rotation, zoom and
        shift that align the photos' structure (the result is never better than
        ``low_confidence``).
    direct_min_peak : float
        Correlation peak that such an alignment needs (else the registration fails).
    strong_inliers : int
        Inliers (with at least ``strong_ratio`` of the matches) that prove the
        correspondence on their own, whatever the pixels say.
    strong_ratio : float
        See ``strong_inliers``.
    """

    working_size: int = 640
    refine_size: int = 2048
    max_features: int = 2000
    contrast_threshold: float = 0.02
    ratio: float = 0.8
    ransac_threshold: float = 3.0
    models: tuple[str, ...] = MODELS
    min_inliers: int = 15
    ok_inliers: int = 40
    refine: bool = True
    refine_points: int = 20000
    label_weight: float = 0.05
    photometric: bool = True
    shading: bool = True
    nonrigid: bool = False
    nonrigid_size: int = 1024
    min_overlap: float = 0.1
    ok_overlap: float = 0.3
    scale_limits: tuple[float, float] = (0.25, 4.0)
    max_anisotropy: tuple[float, float] = (1.4, 2.2)
    max_perspective: tuple[float, float] = (1.8, 3.0)
    min_peak: tuple[float, float] = (0.08, 0.03)
    min_spread: tuple[float, float] = (0.1, 0.02)
    direct_search: bool = True
    direct_min_peak: float = 0.2
    strong_inliers: int = 150
    strong_ratio: float = 0.3

    def __post_init__(self) -> None:
        for name in ("working_size", "refine_size", "max_features", "min_inliers", "ok_inliers", "refine_points", "nonrigid_size"):
            if int(getattr(self, name)) <= 0:
                raise UsageError(f"registration option {name} must be positive, got {getattr(self, name)}")
        if not 0 < self.ratio <= 1:
            raise UsageError(f"registration option ratio must be in (0, 1], got {self.ratio}")
        if not self.ransac_threshold > 0:
            raise UsageError(f"registration option ransac_threshold must be positive, got {self.ransac_threshold}")
        if not self.models or any(m not in MODELS for m in self.models):
            raise UsageError(f"registration models must be a non-empty subset of {MODELS}, got {self.models}")
        if not 0 <= self.label_weight <= 1:
            raise UsageError(f"registration option label_weight must be in [0, 1], got {self.label_weight}")
        if self.ok_inliers < self.min_inliers:
            raise UsageError("registration option ok_inliers must be at least min_inliers")

    def to_dict(self) -> dict[str, Any]:
        return {
            "working_size": self.working_size,
            "refine_size": self.refine_size,
            "models": list(self.models),
            "refine": self.refine,
            "photometric": self.photometric,
            "nonrigid": self.nonrigid,
        }


@dataclass(frozen=True)
class Check:
    """One piece of evidence and what it says about the registration.

    Attributes
    ----------
    name : str
        What was checked (``"inliers"``, ``"overlap"``, ...).
    value : float
        The measured value.
    verdict : str
        ``"ok"``, ``"low_confidence"`` or ``"failed"``.
    message : str
        The value in words, with the limit it was held against.
    """

    name: str
    value: float
    verdict: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        v = float(self.value)
        return {"value": round(v, 4) if np.isfinite(v) else None, "verdict": self.verdict, "message": self.message}


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
        keypoint counts, ``ncc`` and ``peak`` of the aligned images, ``overlap``,
        ``scale``, ``anisotropy``, ``perspective``, ``inlier_spread``, ``time_s``.
    before_shape, after_shape : (H, W)
        Sizes of the two oriented images.
    model : str or None
        Motion model the evidence chose: ``"similarity"``, ``"affine"`` or ``"homography"``.
    checks : tuple of Check
        Every check and its verdict; the status is the worst verdict (in :meth:`to_dict`,
        ``quality["checks"]``).
    photometric : PhotometricCorrection or None
        AFTER -> BEFORE colour correction (see :func:`apply_photometric`).
    displacement : Displacement or None
        Residual non-rigid displacement after the homography (``nonrigid`` option).
    timings : dict
        Seconds spent per stage (``global_s``, ``refine_s``, ...); not part of :meth:`to_dict`,
        so that results of the same input compare equal.
    """

    status: str
    reason: str
    homography: np.ndarray | None = field(compare=False)
    method: str
    inlier_count: int
    quality: dict[str, Any]
    before_shape: tuple[int, int]
    after_shape: tuple[int, int]
    model: str | None = None
    checks: tuple[Check, ...] = ()
    photometric: PhotometricCorrection | None = None
    displacement: Displacement | None = None
    timings: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

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
            "quality": {**self.quality, "checks": {c.name: c.to_dict() for c in self.checks}},
            "model": self.model,
            "photometric": None if self.photometric is None else self.photometric.to_dict(),
            "nonrigid": None if self.displacement is None else self.displacement.to_dict(),
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
    return apply_h(np.asarray(h, dtype=np.float64), points)


def image_corners(shape: tuple[int, int]) -> np.ndarray:
    """The four corner pixel centres ``(x, y)`` of an image of ``shape`` (H, W)."""
    h, w = shape[:2]
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)


def corner_error(h_est: np.ndarray, h_true: np.ndarray, after_shape: tuple[int, int]) -> float:
    """Mean distance in BEFORE pixels between AFTER's four corners mapped by two homographies."""
    c = image_corners(after_shape)
    return float(np.linalg.norm(map_points(h_est, c) - map_points(h_true, c), axis=1).mean())


def _jacobian_at(h: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    x, y = point
    hm = np.asarray(h, dtype=np.float64)
    w = hm[2, 0] * x + hm[2, 1] * y + hm[2, 2]
    u = hm[0, 0] * x + hm[0, 1] * y + hm[0, 2]
    v = hm[1, 0] * x + hm[1, 1] * y + hm[1, 2]
    return np.array(
        [
            [(hm[0, 0] * w - u * hm[2, 0]) / w**2, (hm[0, 1] * w - u * hm[2, 1]) / w**2],
            [(hm[1, 0] * w - v * hm[2, 0]) / w**2, (hm[1, 1] * w - v * hm[2, 1]) / w**2],
        ]
    )


def local_scale(h: np.ndarray, point: tuple[float, float]) -> float:
    """Linear scale factor (AFTER px -> BEFORE px) of a homography at an AFTER point.

    The square root of the Jacobian determinant: a length of 1 AFTER pixel near
    ``point`` is about this many BEFORE pixels.
    """
    return float(np.sqrt(abs(np.linalg.det(_jacobian_at(h, point)))))


def _remap_maps(h: np.ndarray, before_shape: tuple[int, int], displacement: Displacement) -> tuple[np.ndarray, np.ndarray]:
    """Sampling maps into AFTER for every BEFORE pixel: ``inv(H) (x + d(x))``."""
    hb, wb = before_shape[:2]
    d = displacement.full_resolution()
    gx, gy = np.meshgrid(np.arange(wb, dtype=np.float64), np.arange(hb, dtype=np.float64))
    x, y = gx + d[0], gy + d[1]
    hi = np.linalg.inv(np.asarray(h, dtype=np.float64))
    w = hi[2, 0] * x + hi[2, 1] * y + hi[2, 2]
    mx = (hi[0, 0] * x + hi[0, 1] * y + hi[0, 2]) / w
    my = (hi[1, 0] * x + hi[1, 1] * y + hi[1, 2]) / w
    return mx.astype(np.float32), my.astype(np.float32)


def warp_to_before(
    image: np.ndarray,
    h: np.ndarray,
    before_shape: tuple[int, int],
    *,
    nearest: bool = False,
    border_value: int = 0,
    displacement: Displacement | None = None,
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
    displacement : Displacement, optional
        Residual non-rigid field (from ``register(..., options=RegistrationOptions(nonrigid=True))``)
        applied after the homography.

    Returns
    -------
    ndarray of BEFORE's size and ``image``'s dtype
    """
    hb, wb = before_shape[:2]
    src = image.astype(np.uint8) if image.dtype == np.bool_ else image
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if displacement is None:
        out = cv2.warpPerspective(
            src,
            np.asarray(h, dtype=np.float64),
            (int(wb), int(hb)),
            flags=interp,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=border_value,
        )
    else:
        if tuple(displacement.before_shape) != (int(hb), int(wb)):
            raise ValueError(f"displacement is for BEFORE of shape {displacement.before_shape}, not {(hb, wb)}")
        mx, my = _remap_maps(h, before_shape, displacement)
        out = cv2.remap(src, mx, my, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
    return out.astype(bool) if image.dtype == np.bool_ else out


def warp_map_to_before(
    values: np.ndarray,
    h: np.ndarray,
    after_shape: tuple[int, int],
    before_shape: tuple[int, int],
    out_shape: tuple[int, int],
    *,
    displacement: Displacement | None = None,
) -> np.ndarray:
    """Warp a coarse map over AFTER's frame onto a coarse grid over BEFORE's frame.

    For per-pixel quantities known at a reduced resolution (a network's working
    resolution), this samples them where :func:`warp_to_before` would, without making
    a full-resolution copy of either frame.

    Parameters
    ----------
    values : (h_a, w_a) float ndarray
        The map, covering AFTER's whole frame (pixel centres as a resize places them).
    h : (3, 3) ndarray
        AFTER -> BEFORE homography (full-resolution pixels).
    after_shape, before_shape : (H, W)
        Full-resolution sizes of the two photos.
    out_shape : (h_b, w_b)
        The output grid over BEFORE's frame.
    displacement : Displacement, optional
        Residual non-rigid field applied after the homography.

    Returns
    -------
    (h_b, w_b) float32 ndarray
        The map in BEFORE's frame; 0 where AFTER does not reach.
    """
    ha, wa = after_shape[:2]
    hb, wb = before_shape[:2]
    oh, ow = out_shape[:2]
    vh, vw = values.shape[:2]
    gx, gy = np.meshgrid((np.arange(ow) + 0.5) * (wb / ow) - 0.5, (np.arange(oh) + 0.5) * (hb / oh) - 0.5)
    if displacement is not None:
        d = [cv2.resize(c, (ow, oh), interpolation=cv2.INTER_LINEAR) for c in displacement.field]
        gx, gy = gx + d[0], gy + d[1]
    hi = np.linalg.inv(np.asarray(h, dtype=np.float64))
    w = hi[2, 0] * gx + hi[2, 1] * gy + hi[2, 2]
    ax = (hi[0, 0] * gx + hi[0, 1] * gy + hi[0, 2]) / w
    ay = (hi[1, 0] * gx + hi[1, 1] * gy + hi[1, 2]) / w
    mx = ((ax + 0.5) * (vw / wa) - 0.5).astype(np.float32)
    my = ((ay + 0.5) * (vh / ha) - 0.5).astype(np.float32)
    return cv2.remap(np.asarray(values, np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


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


def coverage_mask(
    h: np.ndarray,
    after_shape: tuple[int, int],
    before_shape: tuple[int, int],
    *,
    displacement: Displacement | None = None,
) -> np.ndarray:
    """Pixels of BEFORE's frame that the AFTER photo covers, as an ``(H_b, W_b)`` bool mask."""
    ones = np.ones(after_shape[:2], dtype=np.uint8)
    return warp_to_before(ones, h, before_shape, nearest=True, border_value=0, displacement=displacement).astype(bool)


def apply_photometric(image: np.ndarray, registration: Registration, *, frame: str = "before") -> np.ndarray:
    """Apply a registration's colour correction to an AFTER image.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        AFTER's RGB photo, either warped into BEFORE's frame (``frame="before"``)
        or in its own frame (``frame="after"``).
    registration : Registration
        A registration with a fitted correction.
    frame : str
        Which frame ``image`` is in; the shading gain is defined on BEFORE's frame and
        mapped through the homography for ``"after"``.

    Returns
    -------
    (H, W, 3) uint8 ndarray
        The corrected image; ``image`` itself when there is no correction.

    Raises
    ------
    ValueError
        If ``frame`` is neither ``"before"`` nor ``"after"``, or the image has the
        wrong size for that frame.
    """
    if frame not in ("before", "after"):
        raise ValueError(f"frame must be 'before' or 'after', got {frame!r}")
    expected = registration.before_shape if frame == "before" else registration.after_shape
    if tuple(image.shape[:2]) != tuple(expected):
        raise ValueError(f"image of shape {image.shape[:2]} is not in {frame.upper()}'s frame {tuple(expected)}")
    corr = registration.photometric
    if corr is None or registration.homography is None:
        return image
    to_norm = normaliser(registration.before_shape)
    if frame == "after":
        to_norm = to_norm @ registration.homography
    return apply_correction(image, corr, to_norm)


# --------------------------------------------------------------------------- preparation


def _rgb(source: ImageSource) -> np.ndarray:
    # An upright uint8 RGB array is used as is (no copy, no hashing of 12-megapixel buffers).
    if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3:
        return source
    return as_image(source)[0]


@dataclass(frozen=True)
class _Side:
    """One photo prepared for registration: its levels, coordinate maps, labels and keypoints."""

    shape: tuple[int, int]
    norm: np.ndarray  # full px -> normalised
    work: np.ndarray  # working-resolution RGB
    work_gray: np.ndarray
    work_level: Level  # structure image at the working level
    fine_level: Level | None  # finer refinement level (None when it would equal the working level)
    labels_work: np.ndarray | None  # label map at the working level
    features: Features

    def from_norm(self, level: np.ndarray) -> np.ndarray:
        """Normalised coordinates -> pixel coordinates of a level image."""
        return level_matrix(self.shape, level.shape[:2]) @ np.linalg.inv(self.norm)

    @property
    def lw(self) -> np.ndarray:
        return level_matrix(self.shape, self.work.shape[:2])


def _resize_labels(labels: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if labels is None or labels.shape == tuple(shape):
        return labels
    return cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _prepare(image: np.ndarray, labels: np.ndarray | None, opts: RegistrationOptions) -> _Side:
    """Everything that depends on one photo only (run for both photos in parallel)."""
    norm = normaliser(image.shape[:2])
    fine = downscale(image, max(opts.refine_size, opts.working_size))
    work = downscale(fine, opts.working_size)
    work_gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    labels_work = _resize_labels(labels, work.shape[:2])

    def level(gray: np.ndarray, lab: np.ndarray | None) -> Level:
        return Level(structure_image(gray), level_matrix(image.shape[:2], gray.shape) @ np.linalg.inv(norm), lab)

    fine_level = None
    if fine.shape[:2] != work.shape[:2] and opts.refine:
        fine_gray = cv2.cvtColor(fine, cv2.COLOR_RGB2GRAY)
        fine_level = level(fine_gray, _resize_labels(labels, fine_gray.shape))
    # Keypoints do not come from lesions (or right next to them): those change by design.
    avoid = None
    if labels_work is not None:
        avoid = cv2.dilate((labels_work == LESION).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    features = detect(
        feature_gray(work),
        norm @ np.linalg.inv(level_matrix(image.shape[:2], work.shape[:2])),  # working px -> normalised
        max_features=opts.max_features,
        contrast_threshold=opts.contrast_threshold,
        avoid=avoid,
    )
    return _Side(
        shape=image.shape[:2],
        norm=norm,
        work=work,
        work_gray=work_gray,
        work_level=level(work_gray, labels_work),
        fine_level=fine_level,
        labels_work=labels_work,
        features=features,
    )


def _labels_for(labels: np.ndarray | None, shape: tuple[int, int], name: str) -> np.ndarray | None:
    if labels is None:
        return None
    lab = check_labels(labels, name)
    if lab.shape != tuple(shape[:2]):
        raise ValueError(f"{name} has shape {lab.shape}, but its photo is {tuple(shape[:2])}")
    return lab


# --------------------------------------------------------------------------- geometry evidence


def _geometry(h_norm: np.ndarray, a: _Side, b: _Side) -> dict[str, float]:
    """Plausibility and overlap of a transform given in normalised coordinates (AFTER -> BEFORE)."""
    ca = apply_h(a.norm, image_corners(a.shape))
    cb = apply_h(b.norm, image_corners(b.shape))
    jac = _jacobian_at(h_norm, (0.0, 0.0))
    det = float(np.linalg.det(jac))
    sv = np.linalg.svd(jac, compute_uv=False)
    scales = np.array([np.sqrt(abs(np.linalg.det(_jacobian_at(h_norm, tuple(c))))) for c in ca])
    # The plane at infinity must not cross either image (no folding).
    w_a = ca @ h_norm[2, :2] + h_norm[2, 2]
    hi = np.linalg.inv(h_norm)
    w_b = cb @ hi[2, :2] + hi[2, 2]
    folds = not ((np.all(w_a > 0) or np.all(w_a < 0)) and (np.all(w_b > 0) or np.all(w_b < 0)))
    # Overlap on a grid: share of BEFORE that AFTER covers, and of AFTER that BEFORE covers.
    overlap_b = _covered_share(hi, b, a)
    overlap_a = _covered_share(h_norm, a, b)
    return {
        "scale": float(np.sqrt(abs(det))),
        "rotation_deg": float(np.degrees(np.arctan2(jac[1, 0] - jac[0, 1], jac[0, 0] + jac[1, 1]))),
        "anisotropy": float(sv[0] / max(sv[1], 1e-12)),
        "perspective": float(scales.max() / max(scales.min(), 1e-12)),
        "mirrored": float(det < 0),
        "folds": float(folds),
        "overlap": overlap_b,
        "overlap_after": overlap_a,
    }


def _covered_share(m_norm: np.ndarray, src: _Side, dst: _Side, n: int = 48) -> float:
    """Share of ``src``'s pixels that ``m_norm`` (src normalised -> dst normalised) puts inside ``dst``."""
    h, w = src.shape
    gx, gy = np.meshgrid(np.linspace(0, w - 1, n), np.linspace(0, h - 1, n))
    pts = apply_h(src.norm, np.stack([gx.ravel(), gy.ravel()], 1))
    q = apply_h(np.linalg.inv(dst.norm) @ m_norm, pts)
    hd, wd = dst.shape
    inside = (q[:, 0] >= -0.5) & (q[:, 0] <= wd - 0.5) & (q[:, 1] >= -0.5) & (q[:, 1] <= hd - 0.5)
    return float(inside.mean())


def _inlier_spread(glob: GlobalResult, b: _Side, overlap: float) -> float:
    """Area of the inliers' convex hull in BEFORE as a share of the area the two photos share."""
    if glob.fit is None or glob.fit.inliers.sum() < 3:
        return 0.0
    pts = apply_h(np.linalg.inv(b.norm), glob.points_b[glob.fit.inliers]).astype(np.float32)
    hull = cv2.convexHull(pts)
    return float(cv2.contourArea(hull) / (max(overlap, 1e-3) * b.shape[0] * b.shape[1]))


# --------------------------------------------------------------------------- checks and status


def _geometry_checks(geo: dict[str, float], opts: RegistrationOptions) -> list[Check]:
    checks = []
    lo, hi = opts.scale_limits
    s = geo["scale"]
    checks.append(
        Check("scale", s, STATUS_OK if lo <= s <= hi else STATUS_FAILED, f"zoom change x{s:.2f} (plausible {lo:g}..{hi:g})")
    )
    an = geo["anisotropy"]
    v = STATUS_OK if an <= opts.max_anisotropy[0] else STATUS_LOW if an <= opts.max_anisotropy[1] else STATUS_FAILED
    checks.append(Check("anisotropy", an, v, f"stretch ratio {an:.2f} (ok up to {opts.max_anisotropy[0]:g}, fails above {opts.max_anisotropy[1]:g})"))
    pe = geo["perspective"]
    v = STATUS_OK if pe <= opts.max_perspective[0] else STATUS_LOW if pe <= opts.max_perspective[1] else STATUS_FAILED
    checks.append(Check("perspective", pe, v, f"corner scale ratio {pe:.2f} (ok up to {opts.max_perspective[0]:g}, fails above {opts.max_perspective[1]:g})"))
    if geo["mirrored"] or geo["folds"]:
        checks.append(Check("topology", 1.0, STATUS_FAILED, "the transform mirrors or folds the image"))
    ov = geo["overlap"]
    v = STATUS_OK if ov >= opts.ok_overlap else STATUS_LOW if ov >= opts.min_overlap else STATUS_FAILED
    checks.append(Check("overlap", ov, v, f"AFTER covers {ov:.0%} of BEFORE (needs {opts.min_overlap:.0%}, ok from {opts.ok_overlap:.0%})"))
    return checks


def _match_checks(glob: GlobalResult, opts: RegistrationOptions) -> list[Check]:
    n_in = glob.inlier_count
    ratio = n_in / glob.match_count if glob.match_count else 0.0
    v = STATUS_OK if n_in >= opts.ok_inliers else STATUS_LOW if n_in >= opts.min_inliers else STATUS_FAILED
    checks = [Check("inliers", n_in, v, f"{n_in} consistent matches (needs {opts.min_inliers}, ok from {opts.ok_inliers})")]
    v = STATUS_OK if ratio >= 0.2 else STATUS_LOW
    checks.append(Check("inlier_ratio", ratio, v, f"{ratio:.0%} of {glob.match_count} matches are consistent (ok from 20%)"))
    return checks


def _spread_check(spread: float, glob: GlobalResult, opts: RegistrationOptions) -> Check:
    lo, fail = opts.min_spread
    strong = glob.inlier_count >= opts.strong_inliers
    v = STATUS_OK if spread >= lo else STATUS_LOW if spread >= fail or strong else STATUS_FAILED
    msg = f"the consistent matches span {spread:.0%} of the shared area (ok from {lo:.0%}, fails below {fail:.0%})"
    if v != STATUS_OK:
        msg += ": the transform is extrapolated over the rest"
    return Check("inlier_spread", spread, v, msg)


def _evidence_checks(
    ev: dict[str, float], glob: GlobalResult, opts: RegistrationOptions, trusted: float, *, direct: bool = False
) -> list[Check]:
    peak = ev["peak"]
    if direct:
        # No feature consensus to lean on: the image structure alone must be convincing.
        v = STATUS_LOW if peak >= opts.direct_min_peak else STATUS_FAILED
        msg = (
            f"the aligned images correlate {ev['ncc']:.2f}, {peak:.2f} more than 3 pixels off "
            f"(an alignment without feature matches needs {opts.direct_min_peak:g})"
        )
        return [Check("image_agreement", peak, v, msg)]
    ratio = glob.inlier_count / glob.match_count if glob.match_count else 0.0
    strong = glob.inlier_count >= opts.strong_inliers and ratio >= opts.strong_ratio
    ok_peak, fail_peak = opts.min_peak
    if peak >= ok_peak:
        v = STATUS_OK
    elif peak >= fail_peak or strong:
        v = STATUS_LOW
    else:
        v = STATUS_FAILED
    checks = [
        Check(
            "image_agreement",
            peak,
            v,
            f"the aligned images correlate {ev['ncc']:.2f}, {peak:.2f} more than 3 pixels off "
            f"(ok from {ok_peak:g}, fails below {fail_peak:g} unless the matches are conclusive)",
        )
    ]
    if np.isfinite(trusted):
        v = STATUS_OK if trusted >= 0.3 else STATUS_LOW
        checks.append(Check("trusted_pixels", trusted, v, f"{trusted:.0%} of the compared pixels agree after alignment (ok from 30%)"))
    return checks


def _status(checks: list[Check]) -> tuple[str, str]:
    """The worst verdict, and the messages of the checks that gave it (a short summary when all are ok)."""
    worst = max((c.verdict for c in checks), key=_SEVERITY.__getitem__, default=STATUS_FAILED)
    if worst == STATUS_OK:
        v = {c.name: c.value for c in checks}
        return STATUS_OK, (
            f"{v['inliers']:.0f} consistent matches ({v['inlier_ratio']:.0%}), the aligned images correlate "
            f"{v['image_agreement']:.2f} more than 3 pixels off, AFTER covers {v['overlap']:.0%} of BEFORE"
        )
    return worst, "; ".join(c.message for c in checks if c.verdict == worst)


def _score(glob: GlobalResult, ev: dict[str, float], geo: dict[str, float], checks: list[Check], opts: RegistrationOptions, *, direct: bool) -> float:
    """Confidence in 0..1: the geometric mean of the evidence, each mapped to 0..1 (0 when any check failed).

    Without a feature consensus (direct search) the matches count as a fixed 0.25.
    """
    if any(c.verdict == STATUS_FAILED for c in checks):
        return 0.0
    n_in = glob.inlier_count
    ratio = n_in / glob.match_count if glob.match_count else 0.0
    matches = 0.25 if direct else np.clip((n_in - opts.min_inliers + 1) / (2 * opts.ok_inliers - opts.min_inliers + 1), 0, 1) * np.clip(ratio / 0.4, 0, 1)
    parts = [matches, np.clip(ev["peak"] / 0.3, 0, 1), np.clip(geo["overlap"] / 0.5, 0, 1)]
    return float(np.prod(parts) ** (1.0 / len(parts)))


# --------------------------------------------------------------------------- registration


def _method_name(opts: RegistrationOptions, refined: bool, direct: bool) -> str:
    parts = ["direct-search" if direct else "rootsift+usac+gric"]
    if refined:
        parts.append("irls-lk")
    if opts.nonrigid:
        parts.append("dis")
    return "/".join(parts)


def register(
    before: ImageSource,
    after: ImageSource,
    *,
    options: RegistrationOptions | None = None,
    before_labels: np.ndarray | None = None,
    after_labels: np.ndarray | None = None,
) -> Registration:
    """Register AFTER onto BEFORE and say how far the result can be trusted.

    Parameters
    ----------
    before, after : path-like or (H, W, 3) uint8 ndarray
        The month-0 and the follow-up photo of one view.
    options : RegistrationOptions, optional
        Settings; defaults are tuned for clinical repeat photos.
    before_labels, after_labels : (H, W) uint8 ndarray, optional
        Label maps of the photos (0 background, 1 skin, 2 lesion, 3 hair). Lesions and
        hair change by design between visits: with labels, lesions provide no keypoints,
        lesions and hair that grew or was lost are down-weighted in the refinement and
        the non-rigid field, and both are left out of the colour fit.

    Returns
    -------
    Registration
        Homography AFTER -> BEFORE, model, status with its reason and checks, evidence,
        colour correction and (with ``nonrigid``) the displacement field. A pair that
        cannot be aligned is a result with ``status == "failed"`` and no homography,
        not an exception.

    Raises
    ------
    InputError
        If an image cannot be read.
    ValueError
        If a label map is not a label map of its photo's size.
    """
    opts = options or RegistrationOptions()
    img_b, img_a = _rgb(before), _rgb(after)
    lab_b = _labels_for(before_labels, img_b.shape, "before_labels")
    lab_a = _labels_for(after_labels, img_a.shape, "after_labels")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    # The two photos are independent until matching: prepare them on two threads
    # (OpenCV and numpy release the GIL), which halves this stage's time on two cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        b, a = pool.map(lambda args: _prepare(*args, opts), [(img_b, lab_b), (img_a, lab_a)])
    fa, fb = a.features, b.features
    px_per_norm = float(b.from_norm(b.work)[0, 0])
    glob = fit_global(fa, fb, ratio=opts.ratio, threshold_px=opts.ransac_threshold, px_per_norm=px_per_norm, models=opts.models)
    timings["global_s"] = time.perf_counter() - t0
    quality: dict[str, Any] = {
        "score": 0.0,
        "keypoints_before": len(fb.points),
        "keypoints_after": len(fa.points),
        "match_count": glob.match_count,
        "inlier_ratio": round(glob.inlier_count / glob.match_count, 4) if glob.match_count else 0.0,
    }

    def finish(status: str, reason: str, checks: list[Check], h: np.ndarray | None = None, **extra: Any) -> Registration:
        timings["total_s"] = time.perf_counter() - t0
        quality["time_s"] = round(timings["total_s"], 4)
        method = _method_name(opts, h is not None and opts.refine, quality.get("global_model") == "direct")
        shapes = dict(before_shape=tuple(img_b.shape[:2]), after_shape=tuple(img_a.shape[:2]))
        logger.debug("registration %s (%s); stage times %s", status, reason, {k: round(v, 3) for k, v in timings.items()})
        stages = {k: round(v, 4) for k, v in timings.items()}
        return Registration(status, reason, h, method, glob.inlier_count, quality, checks=tuple(checks), timings=stages, **shapes, **extra)

    few = [name for name, f in (("BEFORE", fb), ("AFTER", fa)) if len(f.points) < _MIN_KEYPOINTS]
    if few:
        msg = f"too few keypoints in {' and '.join(few)} ({len(fb.points)} / {len(fa.points)}): blank, featureless or out-of-focus photo?"
        return finish(STATUS_FAILED, msg, [Check("keypoints", min(len(fb.points), len(fa.points)), STATUS_FAILED, msg)])
    checks = _match_checks(glob, opts)
    direct: np.ndarray | None = None
    if glob.fit is None or glob.inlier_count < opts.min_inliers:
        # Too few matches: unrelated photos, or the same skin with faint or changed
        # texture. Only the direct search on image structure can tell them apart.
        if opts.direct_search:
            t_d = time.perf_counter()
            direct = direct_search(
                b.work_gray, a.work_gray, b.labels_work, a.labels_work, b.norm, a.norm,
                full_b=b.shape, full_a=a.shape, label_weight=opts.label_weight,
            )  # fmt: skip
            timings["direct_s"] = time.perf_counter() - t_d
        if direct is None:
            _, reason = _status(checks)
            return finish(STATUS_FAILED, reason + ": unrelated photos, views that do not overlap, or texture that changed almost everywhere?", checks)
        checks = [
            Check(
                "inliers",
                glob.inlier_count,
                STATUS_LOW,
                f"only {glob.inlier_count} consistent feature matches (needs {opts.min_inliers}): aligned on image "
                "structure alone, check the aligned pair",
            )
        ]
        quality["global_model"] = "direct"
    else:
        quality.update(
            {
                "sigma_px": round(glob.sigma_px, 4),
                "gric": {f.model: round(f.gric, 2) for f in glob.candidates},
                "global_model": glob.fit.model,
            }
        )
    start = direct if direct is not None else np.linalg.inv(glob.fit.matrix)  # type: ignore[union-attr]
    geo = _geometry(np.linalg.inv(start), a, b)
    if direct is None:
        spread = _inlier_spread(glob, b, geo["overlap"])
        quality["inlier_spread"] = round(spread, 4)
        checks.append(_spread_check(spread, glob, opts))
    if any(c.verdict == STATUS_FAILED for c in _geometry_checks(geo, opts)):
        checks += _geometry_checks(geo, opts)
        quality.update({k: round(v, 4) for k, v in geo.items()})
        return finish(STATUS_FAILED, _status(checks)[1], checks)

    # 2. intensity refinement: working level with model choice, then the finer level
    t1 = time.perf_counter()
    # The direct search ends with an affine warp (projected onto the allowed model if need be).
    direct_model = "affine" if "affine" in opts.models else min(opts.models, key=MODELS.index)
    start_model = direct_model if direct is not None else glob.fit.model  # type: ignore[union-attr]
    g, model, ev, trusted, quality["refinement"] = _refine_stage(a, b, start, start_model, glob if direct is None else None, px_per_norm, opts)
    timings["refine_s"] = time.perf_counter() - t1
    h_norm = np.linalg.inv(g)
    h_full = np.linalg.inv(b.norm) @ h_norm @ a.norm
    h_full = h_full / h_full[2, 2]
    geo = _geometry(h_norm / h_norm[2, 2], a, b)
    checks += _geometry_checks(geo, opts) + _evidence_checks(ev, glob, opts, trusted, direct=direct is not None)
    quality.update({k: round(v, 4) for k, v in geo.items()})
    quality.update({"ncc": ev["ncc"], "ncc_shifted": ev["ncc_shifted"], "peak": ev["peak"]})
    if np.isfinite(trusted):
        quality["trusted_fraction"] = round(trusted, 4)
    if lab_b is not None and direct is None:
        quality["body_inlier_fraction"] = round(_body_inlier_fraction(glob, b, lab_b), 4)
    status, reason = _status(checks)
    quality["score"] = round(_score(glob, ev, geo, checks, opts, direct=direct is not None), 4)
    if status == STATUS_FAILED:
        if direct is not None:
            reason = f"only {glob.inlier_count} consistent feature matches, and {reason}: unrelated photos, views that do not overlap, or texture that changed almost everywhere?"
        return finish(status, reason, checks, model=model)

    # 3. photometric normalisation, 4. optional non-rigid field
    corr = None
    if opts.photometric:
        t2 = time.perf_counter()
        corr = _fit_photometric(a, b, b.lw @ h_full @ np.linalg.inv(a.lw), opts)
        timings["photometric_s"] = time.perf_counter() - t2
    disp = None
    if opts.nonrigid:
        t3 = time.perf_counter()
        disp, quality["nonrigid"] = _nonrigid(img_a, img_b, h_full, lab_a, lab_b, opts)
        timings["nonrigid_s"] = time.perf_counter() - t3
    return finish(status, reason, checks, h_full, model=model, photometric=corr, displacement=disp)


def _refine_stage(
    a: _Side,
    b: _Side,
    g_global: np.ndarray,
    start_model: str,
    glob: GlobalResult | None,
    px_per_norm: float,
    opts: RegistrationOptions,
) -> tuple[np.ndarray, str, dict[str, float], float, dict[str, Any]]:
    """Refine a start warp (BEFORE norm -> AFTER norm).

    Returns the warp, its model, the evidence, the share of trusted pixels and notes.
    ``glob`` (the feature consensus, None after a direct search) vets the refinement.
    """
    lw = opts.label_weight
    tpl_w = make_template(b.work_level, opts.refine_points, label_weight=lw)
    lvl_a = a.work_level
    ev_global = alignment_evidence(tpl_w, lvl_a, g_global)
    if not opts.refine:
        g = project_to_model(start_model, g_global)
        return g, start_model, alignment_evidence(tpl_w, lvl_a, g), float("nan"), {"used": False}
    res, deviances = refine_with_model_choice(tpl_w, lvl_a, g_global, start_model, models=tuple(opts.models))
    g_ref, levels = res.g, 1
    if b.fine_level is not None and a.fine_level is not None:
        tpl_f = make_template(b.fine_level, 2 * opts.refine_points, label_weight=lw)
        lvl_f = a.fine_level
        res_f = refine(tpl_f, lvl_f, g_ref, res.model, iterations=10)
        if np.isfinite(res_f.deviance):
            g_ref, levels = res_f.g, 2
    ev_ref = alignment_evidence(tpl_w, lvl_a, g_ref)
    accepted, why = _accept_refinement(glob, np.linalg.inv(g_ref), ev_ref, ev_global, px_per_norm, opts)
    info = {"used": accepted, "levels": levels, "iterations": res.iterations, "points": res.points, "deviance": deviances, "note": why}
    if not accepted:
        return g_global, start_model, ev_global, float("nan"), info
    return g_ref, res.model, ev_ref, res.trusted, info


def _accept_refinement(
    glob: GlobalResult | None,
    h_norm: np.ndarray,
    ev_ref: dict[str, float],
    ev_global: dict[str, float],
    px_per_norm: float,
    opts: RegistrationOptions,
) -> tuple[bool, str]:
    """Keep the refinement only if it agrees with the feature inliers and does not lower the correlation."""
    if ev_ref["ncc"] < ev_global["ncc"] - 0.02:
        return False, f"rejected: lowered the image correlation ({ev_global['ncc']:.3f} -> {ev_ref['ncc']:.3f})"
    if glob is None or glob.fit is None:
        return True, f"correlation {ev_global['ncc']:.3f} -> {ev_ref['ncc']:.3f}"
    inl = glob.fit.inliers
    res_ref = np.linalg.norm(apply_h(h_norm, glob.points_a[inl]) - glob.points_b[inl], axis=1) * px_per_norm
    res_glob = glob.fit.residual_px[inl]
    med_ref, med_glob = float(np.median(res_ref)), float(np.median(res_glob))
    if med_ref > max(1.0, 2.0 * med_glob, opts.ransac_threshold / 2):
        return False, f"rejected: moved the feature inliers (median residual {med_glob:.2f} -> {med_ref:.2f} px)"
    return True, f"feature inlier median residual {med_glob:.2f} -> {med_ref:.2f} px; correlation {ev_global['ncc']:.3f} -> {ev_ref['ncc']:.3f}"


def _body_inlier_fraction(glob: GlobalResult, b: _Side, lab_b: np.ndarray) -> float:
    """Share of the inliers that lie on the body (not background) in BEFORE."""
    assert glob.fit is not None
    pts = apply_h(np.linalg.inv(b.norm), glob.points_b[glob.fit.inliers])
    xi = np.clip(np.round(pts[:, 0]).astype(int), 0, b.shape[1] - 1)
    yi = np.clip(np.round(pts[:, 1]).astype(int), 0, b.shape[0] - 1)
    return float((lab_b[yi, xi] != 0).mean()) if len(pts) else 0.0


def _fit_photometric(a: _Side, b: _Side, h_work: np.ndarray, opts: RegistrationOptions) -> PhotometricCorrection | None:
    hb, wb = b.work.shape[:2]
    warped = cv2.warpPerspective(a.work, h_work, (wb, hb), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    cover = cv2.warpPerspective(np.ones(a.work.shape[:2], np.uint8), h_work, (wb, hb), flags=cv2.INTER_NEAREST)
    mask = cv2.erode(cover, np.ones((5, 5), np.uint8)).astype(bool)
    # Healthy skin and background in both photos: lesions and hair follow the disease, not
    # the camera. When the labels leave almost nothing (or are wrong), the trimmed fit
    # alone keeps the changed pixels out.
    healthy = mask.copy()
    for labels in (b.labels_work, None if a.labels_work is None else cv2.warpPerspective(a.labels_work, h_work, (wb, hb), flags=cv2.INTER_NEAREST)):
        if labels is not None:
            healthy &= cv2.erode(((labels != LESION) & (labels != HAIR)).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if healthy.sum() >= 0.1 * mask.sum():
        mask = healthy
    to_norm = b.norm @ np.linalg.inv(b.lw)
    return fit_correction(b.work, warped, mask, to_norm, shading=opts.shading)


def _nonrigid(
    img_a: np.ndarray,
    img_b: np.ndarray,
    h_full: np.ndarray,
    lab_a: np.ndarray | None,
    lab_b: np.ndarray | None,
    opts: RegistrationOptions,
) -> tuple[Displacement, dict[str, Any]]:
    gb = cv2.cvtColor(downscale(img_b, opts.nonrigid_size), cv2.COLOR_RGB2GRAY)
    ga = cv2.cvtColor(downscale(img_a, opts.nonrigid_size), cv2.COLOR_RGB2GRAY)
    lb = level_matrix(img_b.shape[:2], gb.shape)
    la = level_matrix(img_a.shape[:2], ga.shape)
    h_lvl = lb @ h_full @ np.linalg.inv(la)
    size = (gb.shape[1], gb.shape[0])
    warped = cv2.warpPerspective(ga, h_lvl, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cover = cv2.warpPerspective(np.ones(ga.shape, np.float32), h_lvl, size, flags=cv2.INTER_NEAREST)
    la = _resize_labels(lab_a, ga.shape)
    la = None if la is None else cv2.warpPerspective(la, h_lvl, size, flags=cv2.INTER_NEAREST)
    weight = cover * change_weight(_resize_labels(lab_b, gb.shape), la, opts.label_weight)
    disp, info = estimate_displacement(structure_image(gb), structure_image(warped), weight.astype(np.float32), img_b.shape[:2])
    return disp, {**info, **disp.magnitude_stats()}
