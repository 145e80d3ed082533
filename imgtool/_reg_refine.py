"""Intensity-based refinement of registration and the similarity evidence.

Private to :mod:`imgtool.registration`. The refinement is a robust inverse-compositional
Lucas-Kanade on *structure images*, i.e. local-contrast-normalised grey images: a smooth
change of exposure, white balance or shading between the two photos leaves them almost
unchanged, while the edges, pores, moles and outlines that carry the alignment stay.
Pixels that change by design are handled twice: label maps, when given, down-weight
lesions and hair that grew or was lost (see :func:`change_weight`), and iteratively
re-weighted least squares with the Geman-McClure loss removes whatever else disagrees
after alignment.

Warps here map BEFORE normalised coordinates to AFTER normalised coordinates
(``G = inv(H)`` in normalised coordinates; see :func:`imgtool._reg_global.normaliser`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from ._reg_global import MODEL_DOF, MODELS, apply_h
from .labels import HAIR, LESION

logger = logging.getLogger(__name__)

#: Lower bound of the local contrast (grey levels) in the structure image's normalisation.
_CONTRAST_FLOOR = 3.0
#: Points are only taken where the structure image's gradient is at least this.
_MIN_TEXTURE = 0.05


def structure_image(gray: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Local-contrast-normalised image: ``(g - local mean) / local std``.

    Parameters
    ----------
    gray : (h, w) uint8 or float32 ndarray
        Grey image (0..255 scale).
    sigma : float
        Gaussian scale, in pixels, of the local mean and standard deviation.

    Returns
    -------
    (h, w) float32 ndarray
        About zero mean and unit variance in every neighbourhood with texture, near
        zero in flat areas (the contrast floor keeps noise from being amplified).
    """
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 0.8)
    d = g - _smooth(g, sigma)
    var = _smooth(d * d, sigma)
    return d / np.sqrt(var + _CONTRAST_FLOOR**2)


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    """Two passes of a box filter: close to a Gaussian of ``sigma``, at a quarter of its cost."""
    # Each pass has variance (k^2 - 1) / 12; two of them make sigma^2.
    k = max(3, int(round(np.sqrt(6.0 * sigma * sigma + 1.0))) | 1)
    return cv2.blur(cv2.blur(img, (k, k)), (k, k))


def texture_score(struct: np.ndarray) -> np.ndarray:
    """Gradient magnitude of a structure image: how much a pixel constrains the alignment."""
    gx = cv2.Sobel(struct, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(struct, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return np.sqrt(gx * gx + gy * gy)


def select_points(score: np.ndarray, max_points: int, *, cell: int = 16, border: int = 3) -> np.ndarray:
    """Pick up to ``max_points`` pixels with the highest score, spread over a grid.

    Each ``cell`` x ``cell`` block contributes its best pixels, so that a strongly
    textured corner cannot take every point. Pixels with score <= 0 are never picked.

    Returns
    -------
    (N, 2) float64 ndarray
        ``(x, y)`` pixel coordinates.
    """
    s = score.copy()
    s[:border], s[-border:], s[:, :border], s[:, -border:] = 0, 0, 0, 0
    h, w = s.shape
    ny, nx = h // cell, w // cell
    if ny == 0 or nx == 0 or max_points <= 0:
        return np.zeros((0, 2))
    blocks = s[: ny * cell, : nx * cell].reshape(ny, cell, nx, cell).transpose(0, 2, 1, 3).reshape(ny, nx, cell * cell)
    k = int(np.clip(max_points // (ny * nx), 1, cell * cell))
    if k == 1:  # the common case at fine levels, and far cheaper than a partition
        idx = blocks.argmax(axis=2)[..., None]
    else:
        idx = np.argpartition(-blocks, k - 1, axis=2)[..., :k]
    vals = np.take_along_axis(blocks, idx, axis=2)
    by, bx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    ys = by[..., None] * cell + idx // cell
    xs = bx[..., None] * cell + idx % cell
    keep = vals > 0
    return np.stack([xs[keep], ys[keep]], axis=1).astype(np.float64)


# --------------------------------------------------------------------------- motion models


def _jacobian(model: str, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d(x', y')/dp of the model at p = 0 (identity), each (N, k)."""
    z, o = np.zeros_like(u), np.ones_like(u)
    if model == "similarity":  # [[1+a, -b, tx], [b, 1+a, ty]]
        return np.stack([u, -v, o, z], 1), np.stack([v, u, z, o], 1)
    if model == "affine":  # [[1+p0, p2, p4], [p1, 1+p3, p5]]
        return np.stack([u, z, v, z, o, z], 1), np.stack([z, u, z, v, z, o], 1)
    # homography [[1+p0, p2, p4], [p1, 1+p3, p5], [p6, p7, 1]]
    return np.stack([u, z, v, z, o, z, -u * u, -u * v], 1), np.stack([z, u, z, v, z, o, -u * v, -v * v], 1)


def _increment(model: str, p: np.ndarray) -> np.ndarray:
    if model == "similarity":
        a, b, tx, ty = p
        return np.array([[1 + a, -b, tx], [b, 1 + a, ty], [0.0, 0.0, 1.0]])
    m = np.eye(3)
    m[0, 0] += p[0]
    m[1, 0] += p[1]
    m[0, 1] += p[2]
    m[1, 1] += p[3]
    m[0, 2] += p[4]
    m[1, 2] += p[5]
    if model == "homography":
        m[2, 0], m[2, 1] = p[6], p[7]
    return m


def project_to_model(model: str, g: np.ndarray) -> np.ndarray:
    """The warp of class ``model`` closest to ``g`` over the normalised square [-1, 1]^2."""
    if model == "homography":
        return g / g[2, 2]
    t = np.linspace(-1, 1, 7)
    src = np.stack(np.meshgrid(t, t), -1).reshape(-1, 2)
    dst = apply_h(g, src)
    if model == "affine":
        x = np.hstack([src, np.ones((len(src), 1))])
        sol, *_ = np.linalg.lstsq(x, dst, rcond=None)
        return np.vstack([sol.T, [0.0, 0.0, 1.0]])
    from ._reg_global import _lsq_similarity

    return _lsq_similarity(src, dst)


# --------------------------------------------------------------------------- refinement


@dataclass(frozen=True)
class Level:
    """One resolution level of one image.

    Attributes
    ----------
    image : (h, w) float32 ndarray
        Structure image.
    from_norm : (3, 3) ndarray
        Map from normalised coordinates to this level's pixel coordinates.
    labels : (h, w) uint8 ndarray or None
        The photo's label map at this level, when known.
    """

    image: np.ndarray
    from_norm: np.ndarray
    labels: np.ndarray | None = None


def change_weight(lab_b: np.ndarray | None, lab_a: np.ndarray | None, label_weight: float) -> np.ndarray | float:
    """Prior weight of corresponding pixels given their labels: low where the skin changes by design.

    Lesions change between visits even when they persist (they fade, scale, spread), so a
    lesion in either photo is down-weighted; hair only where it grew or was lost (hair in
    both photos is texture like any other). With one label map, its lesion and hair pixels
    are down-weighted.

    Parameters
    ----------
    lab_b, lab_a : uint8 ndarrays of one shape, or None
        Labels of the same points in BEFORE and AFTER.
    label_weight : float
        Weight of changing pixels.

    Returns
    -------
    float32 ndarray of the labels' shape, or 1.0 when neither is given.
    """
    if lab_b is None and lab_a is None:
        return 1.0
    if lab_b is None or lab_a is None:
        lab = lab_b if lab_a is None else lab_a
        changing = (lab == LESION) | (lab == HAIR)
    else:
        changing = (lab_b == LESION) | (lab_a == LESION) | ((lab_b == HAIR) != (lab_a == HAIR))
    return np.where(changing, np.float32(label_weight), np.float32(1.0))


@dataclass(frozen=True)
class Template:
    """The BEFORE side of a level, prepared once: points, their values, gradients and labels."""

    level: Level
    u: np.ndarray  # (N, 2) normalised coordinates
    values: np.ndarray  # (N,)
    grad_u: np.ndarray  # (N, 2) d(structure)/d(normalised coordinate)
    labels: np.ndarray | None  # (N,) BEFORE's labels at the points
    label_weight: float

    def prior(self, labels_a: np.ndarray | None) -> np.ndarray:
        """Prior weight of each point given AFTER's labels where the point lands."""
        return np.broadcast_to(change_weight(self.labels, labels_a, self.label_weight), (len(self.u),)).astype(np.float64)


def make_template(level: Level, max_points: int, *, cell: int | None = None, label_weight: float = 0.05) -> Template:
    """Select the points of BEFORE's level that drive the refinement and evidence.

    By default the grid cell is sized so that each cell gives its single best pixel.
    Pixels without texture are never selected, nor BEFORE's lesion pixels (they are
    always down-weighted) unless the labels would leave less than half of the texture.
    """
    img = level.image
    if cell is None:
        cell = max(3, int(np.sqrt(img.size / max(max_points, 1))))
    score = texture_score(img)
    score[score < _MIN_TEXTURE] = 0
    if level.labels is not None:
        masked = score * (level.labels != LESION)
        if np.count_nonzero(masked) >= 0.5 * np.count_nonzero(score):
            score = masked
    pts = select_points(score, max_points, cell=cell)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    xi, yi = pts[:, 0].astype(int), pts[:, 1].astype(int)
    to_norm = np.linalg.inv(level.from_norm)
    u = apply_h(to_norm, pts)
    # from_norm is diagonal-affine, so d(level px)/d(norm) is its diagonal.
    grad = np.stack([gx[yi, xi] * level.from_norm[0, 0], gy[yi, xi] * level.from_norm[1, 1]], 1).astype(np.float64)
    labels = None if level.labels is None else level.labels[yi, xi]
    return Template(level, u, img[yi, xi].astype(np.float64), grad, labels, label_weight)


def _sample(level: Level, g: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Values of AFTER's level at ``g(u)``, the in-bounds flags and AFTER's labels there."""
    n = len(u)
    q = apply_h(level.from_norm @ g, u).astype(np.float32)
    h, w = level.image.shape
    inside = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
    # remap wants maps narrower than 32767: lay the points out in rows of 1024.
    rows = -(-n // 1024)
    maps = np.zeros((2, rows * 1024), dtype=np.float32)
    maps[:, :n] = q.T
    mx, my = maps[0].reshape(rows, 1024), maps[1].reshape(rows, 1024)
    vals = cv2.remap(level.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0).ravel()[:n]
    labels = None
    if level.labels is not None:
        labels = cv2.remap(level.labels, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0).ravel()[:n]
    return vals.astype(np.float64), inside, labels


@dataclass(frozen=True)
class RefineResult:
    """Outcome of the refinement at one level."""

    g: np.ndarray
    model: str
    iterations: int
    scale: float  # Geman-McClure scale c of the residuals
    trusted: float  # share of the points' prior weight that the robust weights kept
    deviance: float  # 4 * sum(prior * rho(e / c)), about sum(e^2 / sigma^2) for inliers
    points: int


def _gm_rho(e: np.ndarray, c: float) -> np.ndarray:
    r = (e / c) ** 2
    return r / (1.0 + r)


def refine(
    tpl: Template,
    img: Level,
    g0: np.ndarray,
    model: str,
    *,
    iterations: int = 30,
    tol_px: float = 0.005,
    scale: float | None = None,
) -> RefineResult:
    """Robust inverse-compositional Lucas-Kanade of AFTER's level onto BEFORE's points.

    Parameters
    ----------
    tpl : Template
        BEFORE's points at this level.
    img : Level
        AFTER at the same level.
    g0 : (3, 3) ndarray
        Starting warp, BEFORE normalised -> AFTER normalised.
    model : str
        ``"similarity"``, ``"affine"`` or ``"homography"``.
    iterations : int
        Most Gauss-Newton steps.
    tol_px : float
        Stop when the step moves no point of the unit square by more than this many level pixels.
    scale : float, optional
        Fixed Geman-McClure scale; by default re-estimated from the residuals (2 x robust sigma).
    """
    g = project_to_model(model, g0)
    n = len(tpl.u)
    if n < 2 * MODEL_DOF[model]:
        return RefineResult(g, model, 0, float("nan"), 0.0, float("nan"), n)
    ju, jv = _jacobian(model, tpl.u[:, 0], tpl.u[:, 1])
    sd = tpl.grad_u[:, :1] * ju + tpl.grad_u[:, 1:] * jv  # steepest-descent images, (N, k)
    px = tpl.level.from_norm[0, 0]  # level pixels per normalised unit
    corners = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    c = scale if scale is not None else 1.0
    it = 0
    w = np.zeros(n)
    e = np.zeros(n)
    prior = np.ones(n)
    for it in range(1, iterations + 1):
        vals, inside, labels_a = _sample(img, g, tpl.u)
        prior = tpl.prior(labels_a) * inside
        ok = prior > 0
        if ok.sum() < 2 * MODEL_DOF[model]:
            break
        # Scalar contrast gain between the two structure images (focus, JPEG, resampling).
        gain = float(np.sum(prior * vals * tpl.values) / max(np.sum(prior * vals * vals), 1e-9))
        gain = float(np.clip(gain, 0.5, 2.0))
        e = gain * vals - tpl.values
        if scale is None:
            sigma = 1.4826 * float(np.median(np.abs(e[ok])))
            c = float(np.clip(2.0 * sigma, 0.1, 1.0))
        w = prior / (1.0 + (e / c) ** 2) ** 2
        a = sd.T @ (sd * w[:, None])
        b = sd.T @ (w * e)
        a += np.eye(len(a)) * 1e-9 * np.trace(a)
        try:
            dp = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            break
        inc = _increment(model, dp)
        g_new = g @ np.linalg.inv(inc)
        g_new = g_new / g_new[2, 2]
        step = np.abs(apply_h(g_new, corners) - apply_h(g, corners)).max() * px
        g = g_new
        if step < tol_px:
            break
    dev = 4.0 * float(np.sum(prior * _gm_rho(e, c)))
    trusted = float(w.sum() / max(prior.sum(), 1e-9))
    return RefineResult(g, model, it, float(c), trusted, dev, n)


def refine_with_model_choice(
    tpl: Template,
    img: Level,
    g0: np.ndarray,
    start_model: str,
    *,
    models: tuple[str, ...] = MODELS,
    iterations: int = 30,
    correlation_area: float = 25.0,
) -> tuple[RefineResult, dict[str, float]]:
    """Refine with ``start_model``, then adopt a more flexible one of ``models`` only if the pixels demand it.

    The more flexible model must lower the deviance by more than a BIC penalty of
    ``log(N / correlation_area)`` per extra parameter (neighbouring points are not
    independent, hence the effective number of points).

    Returns
    -------
    RefineResult
        The chosen model's refinement.
    dict
        Deviance of every model tried.
    """
    base = refine(tpl, img, g0, start_model, iterations=iterations)
    best = base
    tried = {start_model: round(base.deviance, 2)}
    if not np.isfinite(base.deviance):
        return base, tried
    n_eff = max(base.points / correlation_area, 2.0)
    penalty = float(np.log(n_eff))
    for model in (m for m in MODELS[MODELS.index(start_model) + 1 :] if m in models):
        # Same loss scale as the base run, so that the deviances are comparable.
        cand = refine(tpl, img, best.g, model, iterations=iterations, scale=base.scale)
        tried[model] = round(cand.deviance, 2)
        gain = best.deviance - cand.deviance
        if np.isfinite(cand.deviance) and gain > penalty * (MODEL_DOF[model] - MODEL_DOF[best.model]):
            best = cand
    return best, tried


# --------------------------------------------------------------------------- evidence


def _weighted_ncc(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    sw = w.sum()
    if sw <= 0:
        return 0.0
    ma, mb = (w * a).sum() / sw, (w * b).sum() / sw
    da, db = a - ma, b - mb
    den = np.sqrt((w * da * da).sum() * (w * db * db).sum())
    return float((w * da * db).sum() / den) if den > 0 else 0.0


def alignment_evidence(tpl: Template, img: Level, g: np.ndarray, *, shift_px: float = 3.0) -> dict[str, float]:
    """How well the two structure images agree under ``g``, and how sharply.

    Returns
    -------
    dict
        ``ncc``: weighted correlation of the structure images at the points;
        ``ncc_shifted``: the best correlation with the alignment moved by ``shift_px``
        BEFORE level pixels in any of 8 directions; ``peak``: ``ncc - ncc_shifted``,
        near 0 when the images do not correspond (unrelated photos) and clearly
        positive when the alignment is supported by image content; ``coverage``: share of
        the points that land inside AFTER.
    """
    vals, inside, labels_a = _sample(img, g, tpl.u)
    w = tpl.prior(labels_a) * inside
    if w.sum() < 20:
        return {"ncc": 0.0, "ncc_shifted": 0.0, "peak": 0.0, "coverage": float(inside.mean()) if len(inside) else 0.0}
    ncc = _weighted_ncc(vals, tpl.values, w)
    d = shift_px / tpl.level.from_norm[0, 0]
    shifted = []
    for ang in np.arange(8) * np.pi / 4:
        t = np.array([[1.0, 0.0, d * np.cos(ang)], [0.0, 1.0, d * np.sin(ang)], [0.0, 0.0, 1.0]])
        v2, ins2, lab2 = _sample(img, g @ t, tpl.u)
        shifted.append(_weighted_ncc(v2, tpl.values, tpl.prior(lab2) * ins2))
    best_shift = float(max(shifted))
    return {
        "ncc": round(ncc, 4),
        "ncc_shifted": round(best_shift, 4),
        "peak": round(ncc - best_shift, 4),
        "coverage": round(float(inside.mean()), 4),
    }
