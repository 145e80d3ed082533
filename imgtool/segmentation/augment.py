"""Training augmentations on ``(H, W, 3) uint8`` photos and their targets.

Geometric changes (scale, rotation, flips, crop) move the photo and its target
together (targets with nearest-neighbour sampling; pixels from outside the source
get the ``ignore`` value). Photometric changes (exposure, contrast, gamma, white
balance, saturation, hue, blur, noise, JPEG) touch the photo only. Every random
choice comes from the ``numpy.random.Generator`` passed in, so a seed fixes them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

#: Target value that the loss ignores.
IGNORE: int = 255


@dataclass(frozen=True)
class AugmentOptions:
    """Ranges of the training augmentations (stored in the training config).

    Attributes
    ----------
    scale : (float, float)
        Range of the zoom factor (log-uniform).
    rotation_deg : float
        Largest rotation either way.
    hflip, vflip : float
        Probabilities of horizontal and vertical flips.
    exposure : float
        Largest change of brightness as a gain factor (``1 +- exposure``).
    contrast : float
        Largest change of contrast (``1 +- contrast``).
    gamma : float
        Largest change of gamma (``1 +- gamma``).
    white_balance : float
        Largest per-channel gain change (``1 +- white_balance``).
    saturation : float
        Largest change of saturation (``1 +- saturation``).
    hue_deg : float
        Largest hue rotation either way, in degrees.
    blur_p, blur_sigma : float
        Probability and largest sigma (pixels) of a Gaussian blur.
    noise_p, noise_sigma : float
        Probability and largest sigma (grey levels) of Gaussian noise.
    jpeg_p : float
        Probability of a JPEG round trip.
    jpeg_quality : (int, int)
        Range of the JPEG quality.
    """

    scale: tuple[float, float] = (0.6, 1.6)
    rotation_deg: float = 30.0
    hflip: float = 0.5
    vflip: float = 0.2
    exposure: float = 0.3
    contrast: float = 0.25
    gamma: float = 0.3
    white_balance: float = 0.15
    saturation: float = 0.3
    hue_deg: float = 6.0
    blur_p: float = 0.3
    blur_sigma: float = 1.5
    noise_p: float = 0.4
    noise_sigma: float = 8.0
    jpeg_p: float = 0.4
    jpeg_quality: tuple[int, int] = (35, 95)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "jpeg_quality", tuple(int(v) for v in self.jpeg_quality))
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale range must be positive and ordered, got {self.scale}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentOptions:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown augmentation options: {', '.join(sorted(unknown))}")
        return cls(**d)


def random_crop_transform(
    src_shape: tuple[int, int], crop: int, rng: np.random.Generator, options: AugmentOptions
) -> np.ndarray:
    """A 2x3 affine matrix mapping crop pixels to source pixels (zoom, rotation, flips, position).

    Parameters
    ----------
    src_shape : (int, int)
        ``(H, W)`` of the source.
    crop : int
        Side of the square crop.
    rng : numpy.random.Generator
        Source of randomness.
    options : AugmentOptions
        Ranges.

    Returns
    -------
    (2, 3) float64 ndarray
        For ``cv2.warpAffine(..., flags=WARP_INVERSE_MAP)``.
    """
    h, w = src_shape
    lo, hi = options.scale
    zoom = math.exp(rng.uniform(math.log(lo), math.log(hi)))  # > 1 enlarges the source
    theta = math.radians(rng.uniform(-options.rotation_deg, options.rotation_deg))
    fx = -1.0 if rng.random() < options.hflip else 1.0
    fy = -1.0 if rng.random() < options.vflip else 1.0
    # Centre of the crop in the source: anywhere that keeps most of the crop inside.
    half = crop / (2 * zoom)
    cx = rng.uniform(min(half, w / 2), max(w - half, w / 2))
    cy = rng.uniform(min(half, h / 2), max(h - half, h / 2))
    c, s = math.cos(theta) / zoom, math.sin(theta) / zoom
    a = np.array([[c * fx, -s * fy], [s * fx, c * fy]])
    centre_out = np.array([(crop - 1) / 2, (crop - 1) / 2])
    t = np.array([cx, cy]) - a @ centre_out
    return np.hstack([a, t[:, None]])


def warp_pair(image: np.ndarray, target: np.ndarray, m: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply a crop transform to a photo (bilinear, mirrored border) and its target (nearest, ignore outside)."""
    flags = cv2.WARP_INVERSE_MAP
    img = cv2.warpAffine(image, m, (crop, crop), flags=cv2.INTER_LINEAR | flags, borderMode=cv2.BORDER_REFLECT_101)
    tgt = cv2.warpAffine(
        target, m, (crop, crop), flags=cv2.INTER_NEAREST | flags, borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE
    )
    return img, tgt


def photometric(image: np.ndarray, rng: np.random.Generator, options: AugmentOptions) -> np.ndarray:
    """Random exposure, contrast, gamma, white balance, saturation, hue, blur, noise and JPEG.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB photo.
    rng : numpy.random.Generator
        Source of randomness.
    options : AugmentOptions
        Ranges.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    x = image.astype(np.float32) / 255.0
    gains = 1.0 + rng.uniform(-options.white_balance, options.white_balance, size=3)
    x = x * (gains * (1.0 + rng.uniform(-options.exposure, options.exposure))).astype(np.float32)
    mean = float(x.mean())
    x = (x - mean) * (1.0 + rng.uniform(-options.contrast, options.contrast)) + mean
    x = np.clip(x, 0.0, 1.0) ** (1.0 + rng.uniform(-options.gamma, options.gamma))
    hsv = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_RGB2HSV)  # H in degrees 0..360
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-options.hue_deg, options.hue_deg)) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * (1.0 + rng.uniform(-options.saturation, options.saturation)), 0.0, 1.0)
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.random() < options.blur_p:
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=rng.uniform(0.3, options.blur_sigma))
    if rng.random() < options.noise_p:
        x = x + rng.normal(0.0, rng.uniform(1.0, options.noise_sigma) / 255.0, size=x.shape).astype(np.float32)
    out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < options.jpeg_p:
        q = int(rng.integers(options.jpeg_quality[0], options.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out


def augment_sample(
    image: np.ndarray, target: np.ndarray, crop: int, rng: np.random.Generator, options: AugmentOptions
) -> tuple[np.ndarray, np.ndarray]:
    """A random augmented square crop of a photo and its target.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB photo.
    target : (H, W) uint8 ndarray
        Class indices (or 0/1 for a one-class set), :data:`IGNORE` where unknown.
    crop : int
        Side of the crop.
    rng : numpy.random.Generator
        Source of randomness.
    options : AugmentOptions
        Ranges.

    Returns
    -------
    ((crop, crop, 3) uint8 ndarray, (crop, crop) uint8 ndarray)
    """
    m = random_crop_transform(image.shape[:2], crop, rng, options)
    img, tgt = warp_pair(image, target, m, crop)
    return photometric(img, rng, options), tgt
