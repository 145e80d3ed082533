"""Deterministic random fields and small drawing helpers for the phantom generator.

Everything here takes an explicit :class:`numpy.random.Generator` and returns
``float32`` arrays. To keep phantoms byte-identical across machines, the helpers use
only IEEE-exact numpy arithmetic (+, -, *, /, sqrt, floor, comparisons), OpenCV
resampling and drawing, and no transcendental functions on large arrays.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of ``t`` clipped to 0..1 (``0.5 -> 0.5`` exactly)."""
    x = np.clip(t, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _reduced(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """Size of ``shape`` divided by ``factor`` (at least 1 px; at least the size when factor <= 1)."""
    f = max(1.0, factor)
    return max(1, int(math.ceil(shape[0] / f))), max(1, int(math.ceil(shape[1] / f)))


def _enlarge(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear enlargement of a field made at a reduced size (itself when sizes match)."""
    if small.shape[:2] == tuple(shape):
        return small
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Band-limited Gaussian noise with features about ``cell`` pixels across.

    A grid of unit normal values with spacing ``cell`` is upsampled with bicubic
    interpolation, so the field is smooth and has a standard deviation near 0.6.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    shape : (H, W)
        Output size.
    cell : float
        Grid spacing in output pixels (>= 1).

    Returns
    -------
    (H, W) float32 ndarray
    """
    c = max(1.0, float(cell))
    # Broad noise is made at a reduced size (4 px per grid cell) and enlarged bilinearly.
    f = max(1.0, c / 4.0)
    sh, sw = _reduced(shape, f)
    cs = c / f
    gh = max(2, int(math.ceil(sh / cs)) + 2)
    gw = max(2, int(math.ceil(sw / cs)) + 2)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    if cs <= 1.0:
        small = grid[:sh, :sw].copy()
    else:
        # Upsample the grid by cs (not stretched to fit) and crop away the border cell.
        uh, uw = int(round(gh * cs)), int(round(gw * cs))
        up = cv2.resize(grid, (uw, uh), interpolation=cv2.INTER_CUBIC)
        oy = min(uh - sh, int(round(cs / 2)))
        ox = min(uw - sw, int(round(cs / 2)))
        small = np.ascontiguousarray(up[oy : oy + sh, ox : ox + sw])
    return _enlarge(small, shape)


def fractal(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cell: float,
    *,
    octaves: int = 3,
    gain: float = 0.5,
) -> np.ndarray:
    """Sum of :func:`noise` octaves (cell halving each time), scaled to std about 1.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    shape : (H, W)
        Output size.
    cell : float
        Feature size of the coarsest octave in pixels.
    octaves : int
        Number of octaves; octaves finer than 1.5 px are skipped.
    gain : float
        Amplitude ratio between successive octaves.

    Returns
    -------
    (H, W) float32 ndarray
    """
    cells = []
    c = float(cell)
    for _ in range(max(1, octaves)):
        if c < 1.5 and cells:
            break
        cells.append(c)
        c /= 2.0
    # Sum the octaves at a size that still has 4 px per finest cell, then enlarge once.
    f = max(1.0, cells[-1] / 4.0)
    sh, sw = _reduced(shape, f)
    out = np.zeros((sh, sw), dtype=np.float32)
    amp = 1.0
    norm = 0.0
    for c in cells:
        out += np.float32(amp) * noise(rng, (sh, sw), c / f)
        norm += amp * amp
        amp *= gain
    out *= np.float32(1.0 / (0.6 * math.sqrt(norm)))
    return _enlarge(out, shape)


def oriented_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    along: float,
    across: float,
    angle: float,
) -> np.ndarray:
    """Noise stretched along a direction: long streaks ``along`` px by ``across`` px.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    shape : (H, W)
        Output size.
    along, across : float
        Grid spacing along and across the streak direction, in pixels.
    angle : float
        Streak direction in radians (0 = along x).

    Returns
    -------
    (H, W) float32 ndarray, std about 0.6
    """
    # Broad streaks are drawn at a reduced size and enlarged (much cheaper, same look).
    f = max(1.0, float(across) / 2.0)
    sh, sw = (max(2, v) for v in _reduced(shape, f))
    a = max(1.0, float(along) / f)
    b = max(0.75, float(across) / f)
    diag = math.hypot(sh, sw)
    gh = int(math.ceil(diag / b)) + 4
    gw = int(math.ceil(diag / a)) + 4
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    ca, sa = math.cos(angle), math.sin(angle)
    # Output (x, y) -> rotate into (u along, v across) around the centre -> grid coords.
    cx, cy = (sw - 1) / 2.0, (sh - 1) / 2.0
    gx0, gy0 = (gw - 1) / 2.0, (gh - 1) / 2.0
    m = np.array(
        [
            [ca / a, sa / a, gx0 - (ca * cx + sa * cy) / a],
            [-sa / b, ca / b, gy0 - (-sa * cx + ca * cy) / b],
        ],
        dtype=np.float64,
    )
    small = cv2.warpAffine(grid, m, (sw, sh), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    return _enlarge(small, shape)


def ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin lines along the zero crossings of ``field``: ``1 - |field| / width`` clipped to 0..1."""
    return np.clip(1.0 - np.abs(field) * np.float32(1.0 / width), 0.0, 1.0)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with reflected borders (a copy when ``sigma`` is tiny).

    Wide blurs run on a reduced copy and are enlarged again, which is much faster
    and looks the same for the smooth fields they are used on.
    """
    if sigma < 0.3:
        return image.copy()
    if sigma <= 4.0:
        return cv2.GaussianBlur(image, (0, 0), float(sigma), borderType=cv2.BORDER_REFLECT)
    h, w = image.shape[:2]
    f = sigma / 2.0
    sh, sw = max(1, int(round(h / f))), max(1, int(round(w / f)))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), math.sqrt(max(4.0 - 0.25, 0.5)), borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def sparse_points(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
    """``count`` random integer points ``(x, y)`` drawn uniformly from the True pixels of ``mask``.

    Returns
    -------
    (N, 2) int64 ndarray, N <= count (0 when the mask is empty)
    """
    flat = np.flatnonzero(mask.ravel())
    if count <= 0 or flat.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    idx = flat[rng.integers(0, flat.size, size=int(count))]
    w = mask.shape[1]
    return np.stack([idx % w, idx // w], axis=1)


def splat(
    shape: tuple[int, int],
    points: np.ndarray,
    values: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Accumulate ``values`` at integer ``points`` ``(x, y)`` into a float32 image."""
    out = np.zeros(shape, dtype=np.float32)
    if len(points) == 0:
        return out
    v = np.broadcast_to(np.asarray(values, dtype=np.float32), (len(points),))
    np.add.at(out, (points[:, 1], points[:, 0]), v)
    return out


def draw_discs(
    shape: tuple[int, int],
    centres: np.ndarray,
    radii: np.ndarray,
    values: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Antialiased filled discs on a float32 canvas (max where they overlap).

    Parameters
    ----------
    shape : (H, W)
        Canvas size.
    centres : (N, 2) float ndarray
        Disc centres ``(x, y)`` in pixels.
    radii : (N,) float ndarray
        Radii in pixels. Discs under 1.5 px are splatted as their area onto the
        nearest pixel (blur afterwards gives them their round shape).
    values : float or (N,) ndarray
        Value of each disc, 0..1.

    Returns
    -------
    (H, W) float32 ndarray
    """
    h, w = shape
    n = len(centres)
    out = np.zeros(shape, dtype=np.float32)
    if n == 0:
        return out
    c = np.asarray(centres, dtype=np.float64)
    r = np.asarray(radii, dtype=np.float64)
    vals = np.broadcast_to(np.asarray(values, dtype=np.float64), (n,))
    small = r < 1.5
    if small.any():
        x = np.floor(c[small, 0] + 0.5).astype(np.int64)
        y = np.floor(c[small, 1] + 0.5).astype(np.int64)
        ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        area = np.pi * r[small] * r[small]
        acc = np.bincount((y * w + x)[ok], weights=(vals[small] * area)[ok], minlength=h * w)
        out = np.minimum(acc.reshape(h, w), 1.0).astype(np.float32)
    big = np.flatnonzero(~small)
    if big.size:
        canvas = np.zeros(shape, dtype=np.uint8)
        shift = 4  # sub-pixel precision of OpenCV drawing
        for i in big:
            level = int(round(255 * float(vals[i])))
            if level <= 0:
                continue
            cv2.circle(
                canvas,
                (int(round(c[i, 0] * (1 << shift))), int(round(c[i, 1] * (1 << shift)))),
                int(round(r[i] * (1 << shift))),
                level,
                thickness=-1,
                lineType=cv2.LINE_AA,
                shift=shift,
            )
        out = np.maximum(out, canvas.astype(np.float32) * np.float32(1.0 / 255.0))
    return out


def polylines_alpha(
    shape: tuple[int, int],
    lines: list[np.ndarray],
    thickness: int,
    level: float = 1.0,
) -> np.ndarray:
    """Draw antialiased polylines into a float32 alpha canvas (0..1).

    Parameters
    ----------
    shape : (H, W)
        Canvas size.
    lines : list of (K, 2) float ndarray
        Polylines in pixel coordinates ``(x, y)``.
    thickness : int
        Line thickness in pixels (>= 1).
    level : float
        Alpha of the lines, 0..1 (thin strands below 1 px use less than 1).

    Returns
    -------
    (H, W) float32 ndarray
    """
    canvas = np.zeros(shape, dtype=np.uint8)
    if lines:
        shift = 3
        pts = [np.round(np.asarray(p) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2) for p in lines]
        cv2.polylines(canvas, pts, False, int(round(255 * min(max(level, 0.0), 1.0))), thickness=max(1, int(thickness)), lineType=cv2.LINE_AA, shift=shift)
    return canvas.astype(np.float32) * np.float32(1.0 / 255.0)


def power(x: np.ndarray, exponent: int) -> np.ndarray:
    """``x ** exponent`` for a power of two by repeated squaring (exact IEEE arithmetic)."""
    out = x.astype(np.float32, copy=True)
    e = 1
    while e < exponent:
        out *= out
        e *= 2
    return out
