"""Global stage of registration: features, matches, robust fits and model choice.

Private to :mod:`imgtool.registration`. Every geometric quantity here lives in
*normalised* full-resolution coordinates (see :func:`normaliser`), in which a
similarity of the full-resolution images is a similarity, whatever the working
resolution's rounding; residuals and thresholds are converted to BEFORE working
pixels where they are judged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Motion models from the simplest to the most flexible, with their degrees of freedom.
MODELS: tuple[str, ...] = ("similarity", "affine", "homography")
MODEL_DOF: dict[str, int] = {"similarity": 4, "affine": 6, "homography": 8}


# --------------------------------------------------------------------------- coordinates


def level_matrix(full_shape: tuple[int, int], level_shape: tuple[int, int]) -> np.ndarray:
    """3x3 map from full-resolution pixel coordinates to a resized level's pixel coordinates.

    Pixel centres are at integers in both, so ``x_l + 0.5 = s_x (x + 0.5)``.
    """
    sx = level_shape[1] / full_shape[1]
    sy = level_shape[0] / full_shape[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def normaliser(shape: tuple[int, int]) -> np.ndarray:
    """3x3 map from full-resolution pixels to normalised coordinates.

    Centred on the image centre and divided by half the long side (isotropic, so a
    similarity stays a similarity); the image spans about ``[-1, 1]`` on its long side.
    """
    h, w = shape[:2]
    half = max(h, w) / 2.0
    return np.array([[1 / half, 0.0, -(w - 1) / 2 / half], [0.0, 1 / half, -(h - 1) / 2 / half], [0.0, 0.0, 1.0]])


def apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points by a 3x3 matrix (homogeneous division)."""
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    q = p @ h[:2, :2].T + h[:2, 2]
    w = p @ h[2, :2] + h[2, 2]
    return q / w[:, None]


def downscale(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize so that the long side is at most ``long_side`` (area averaging); never upscales.

    An integer reduction factor is preferred when it keeps at least 3/4 of the
    requested size: OpenCV's area averaging is several times faster for those.
    """
    h, w = image.shape[:2]
    f = max(h, w) / long_side
    if f <= 1.0:
        return image
    fi = int(np.ceil(f))
    if max(h, w) / fi >= 0.75 * long_side:
        f = float(fi)
    size = (max(1, round(w / f)), max(1, round(h / f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def feature_gray(rgb: np.ndarray) -> np.ndarray:
    """Grey image for feature detection, with local contrast equalised (CLAHE).

    CLAHE evens out exposure and shading differences, so that corresponding
    structures give similar descriptors under a lighting change.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return cv2.createCLAHE(clipLimit=2.5, tileGridSize=(8, 8)).apply(gray)


# --------------------------------------------------------------------------- features and matches


@dataclass(frozen=True)
class Features:
    """Keypoints of one image: ``points`` (N, 2) float64 in normalised coordinates, SIFT descriptors."""

    points: np.ndarray
    descriptors: np.ndarray


def detect(
    gray: np.ndarray,
    to_norm: np.ndarray,
    *,
    max_features: int,
    contrast_threshold: float = 0.04,
    avoid: np.ndarray | None = None,
) -> Features:
    """SIFT keypoints and RootSIFT descriptors of a working-resolution grey image.

    Parameters
    ----------
    gray : (h, w) uint8 ndarray
        Working-resolution grey image.
    to_norm : (3, 3) ndarray
        Map from this image's working pixels to normalised coordinates.
    max_features : int
        Most keypoints kept (the strongest).
    contrast_threshold : float
        SIFT's threshold on the local contrast of a keypoint (lower finds more on faint texture).
    avoid : (h, w) bool ndarray, optional
        Where keypoints should not come from (lesions). Advice, not a constraint: if
        following it would leave fewer than half of the keypoints (or fewer than 100),
        the labels are more likely wrong than the photo all lesion, and it is ignored.
    """
    sift = cv2.SIFT_create(nfeatures=max_features, contrastThreshold=contrast_threshold)
    kps, desc = sift.detectAndCompute(gray, None)
    if desc is None or len(kps) == 0:
        return Features(np.zeros((0, 2)), np.zeros((0, 128), np.float32))
    pts = np.array([k.pt for k in kps], dtype=np.float64)
    if avoid is not None:
        xi = np.clip(np.round(pts[:, 0]).astype(int), 0, gray.shape[1] - 1)
        yi = np.clip(np.round(pts[:, 1]).astype(int), 0, gray.shape[0] - 1)
        keep = ~avoid[yi, xi]
        if keep.sum() >= max(100, 0.5 * len(pts)):
            pts, desc = pts[keep], desc[keep]
        else:
            logger.debug("keypoint mask ignored: it would keep %d of %d keypoints", int(keep.sum()), len(pts))
    # RootSIFT (Hellinger kernel): L1-normalise, square root; matches better than raw SIFT.
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
    np.sqrt(desc, out=desc)
    return Features(apply_h(to_norm, pts), desc)


def match(fa: Features, fb: Features, *, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours that pass Lowe's ratio test.

    Returns
    -------
    ia, ib : (M,) int ndarrays
        Indices into ``fa`` and ``fb`` of the matched keypoints.
    """
    if len(fa.points) < 2 or len(fb.points) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    # Unit-norm descriptors: the nearest neighbour has the largest dot product.
    sim = fa.descriptors @ fb.descriptors.T
    rows = np.arange(len(sim))
    best_b = sim.argmax(axis=1)
    col_best = sim.max(axis=0)  # (a column-wise max is fast where a column-wise argmax is not)
    s1 = sim[rows, best_b].copy()
    mutual = s1 >= col_best[best_b]
    sim[rows, best_b] = -np.inf
    s2 = sim.max(axis=1)
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * s1, 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * s2, 0.0))
    keep = (d1 < ratio * d2) & mutual
    return rows[keep], best_b[keep]


# --------------------------------------------------------------------------- model fitting


def _lsq_similarity(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, isotropic scale, translation) taking pa to pb."""
    ma, mb = pa.mean(axis=0), pb.mean(axis=0)
    a, b = pa - ma, pb - mb
    den = (a**2).sum()
    if den <= 0:
        return np.eye(3)
    c = (a * b).sum() / den
    s = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / den
    m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    m[:2, 2] = mb - m[:2, :2] @ ma
    return m


def _lsq_affine(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    x = np.hstack([pa, np.ones((len(pa), 1))])
    sol, *_ = np.linalg.lstsq(x, pb, rcond=None)
    return np.vstack([sol.T, [0.0, 0.0, 1.0]])


def _lsq_homography(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    h, _ = cv2.findHomography(pa, pb, 0)
    if h is None:
        return np.eye(3)
    return h / h[2, 2]


_LSQ = {"similarity": _lsq_similarity, "affine": _lsq_affine, "homography": _lsq_homography}


def _robust_fit(model: str, pa: np.ndarray, pb: np.ndarray, threshold: float) -> np.ndarray | None:
    """Robust estimate of one model (normalised coordinates); None if the estimator finds none."""
    kw: dict[str, Any] = dict(maxIters=5000, confidence=0.999)
    if model == "similarity":
        if len(pa) < 2:
            return None
        m, _ = cv2.estimateAffinePartial2D(pa, pb, method=cv2.RANSAC, ransacReprojThreshold=threshold, refineIters=0, **kw)
    elif model == "affine":
        if len(pa) < 3:
            return None
        m, _ = cv2.estimateAffine2D(pa, pb, method=cv2.RANSAC, ransacReprojThreshold=threshold, refineIters=0, **kw)
    else:
        if len(pa) < 4:
            return None
        m, _ = cv2.findHomography(pa, pb, cv2.USAC_MAGSAC, threshold, maxIters=10000, confidence=0.999)
        return None if m is None or not np.all(np.isfinite(m)) or abs(m[2, 2]) < 1e-12 else m / m[2, 2]
    return None if m is None else np.vstack([m, [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ModelFit:
    """One model fitted to the matches.

    ``matrix`` maps AFTER normalised coordinates to BEFORE normalised coordinates;
    ``residual_px`` are all matches' transfer errors in BEFORE working pixels.
    """

    model: str
    matrix: np.ndarray
    inliers: np.ndarray
    residual_px: np.ndarray
    gric: float = 0.0


@dataclass(frozen=True)
class GlobalResult:
    """What the global stage found (internal)."""

    fit: ModelFit | None
    candidates: tuple[ModelFit, ...]
    keypoints: tuple[int, int]
    match_count: int
    sigma_px: float
    points_a: np.ndarray = field(repr=False)
    points_b: np.ndarray = field(repr=False)

    @property
    def inlier_count(self) -> int:
        return 0 if self.fit is None else int(self.fit.inliers.sum())


def _fit_one(model: str, pa: np.ndarray, pb: np.ndarray, threshold: float) -> ModelFit | None:
    """Robust fit, then two rounds of least squares on the inliers (pixel-like units)."""
    m = _robust_fit(model, pa, pb, threshold)
    if m is None:
        return None
    for _ in range(2):
        inl = np.linalg.norm(apply_h(m, pa) - pb, axis=1) < threshold
        if inl.sum() < MODEL_DOF[model] // 2 + 1:
            break
        m = _LSQ[model](pa[inl], pb[inl])
    res = np.linalg.norm(apply_h(m, pa) - pb, axis=1)
    return ModelFit(model, m, res < threshold, res)


def gric(residual_px: np.ndarray, sigma: float, dof: int) -> float:
    """Torr's Geometric Robust Information Criterion of a 2-D point map (lower is better).

    ``sum(min(e^2 / sigma^2, 2 (r - d))) + lambda1 d n + lambda2 k`` with data dimension
    r = 4, structure dimension d = 2, lambda1 = log 4, lambda2 = log(4 n), k the model's
    degrees of freedom. Residuals of outliers are capped, so they cost every model alike.
    """
    n = len(residual_px)
    rho = np.minimum((residual_px / sigma) ** 2, 4.0).sum()
    return float(rho + np.log(4.0) * 2 * n + np.log(4.0 * n) * dof)


def fit_global(
    fa: Features,
    fb: Features,
    *,
    ratio: float,
    threshold_px: float,
    px_per_norm: float,
    models: tuple[str, ...] = MODELS,
) -> GlobalResult:
    """Match features and fit the motion model that the matches support best.

    Every model in ``models`` is estimated robustly (RANSAC for similarity and affine,
    MAGSAC++ for the homography), refined by least squares on its inliers, and scored
    by GRIC with the noise level measured on the homography's inliers; the lowest GRIC
    wins, so a more flexible model is chosen only when the residuals demand it.

    Parameters
    ----------
    fa, fb : Features
        AFTER's and BEFORE's keypoints.
    ratio : float
        Lowe's ratio.
    threshold_px : float
        Inlier threshold in BEFORE working pixels.
    px_per_norm : float
        BEFORE working pixels per normalised unit.
    models : tuple of str
        Candidate models.
    """
    ia, ib = match(fa, fb, ratio=ratio)
    pa, pb = fa.points[ia], fb.points[ib]
    kp = (len(fa.points), len(fb.points))
    # The robust estimators are tuned for pixel units: fit in normalised coordinates
    # scaled by one common factor (so a similarity stays a similarity), then scale back.
    k = px_per_norm
    unscale = np.diag([1 / k, 1 / k, 1.0])
    fits = (_fit_one(m, pa * k, pb * k, threshold_px) for m in models)
    cands = [
        ModelFit(f.model, unscale @ f.matrix @ np.linalg.inv(unscale), f.inliers, f.residual_px)
        for f in fits
        if f is not None
    ]
    if not cands:
        return GlobalResult(None, (), kp, len(pa), float("nan"), pa, pb)
    # Noise level from the most flexible model's inliers: e^2 ~ sigma^2 chi2(2), median 1.386 sigma^2.
    ref = max(cands, key=lambda f: MODEL_DOF[f.model])
    inl_res = ref.residual_px[ref.inliers]
    sigma = float(np.sqrt(np.median(inl_res**2) / 1.386)) if len(inl_res) >= 5 else threshold_px / 2
    sigma = float(np.clip(sigma, 0.15, threshold_px / 2))
    scored = tuple(
        ModelFit(f.model, f.matrix, f.inliers, f.residual_px, gric(f.residual_px, sigma, MODEL_DOF[f.model])) for f in cands
    )
    best = min(scored, key=lambda f: (f.gric, MODEL_DOF[f.model]))
    logger.debug(
        "global: %d matches, GRIC %s -> %s",
        len(pa),
        {f.model: round(f.gric, 1) for f in scored},
        best.model,
    )
    return GlobalResult(best, scored, kp, len(pa), sigma, pa, pb)
