"""Cameras, body deformation, lighting and the sensor of a phantom photo.

A camera is a homography from the world canvas to the photo. A pair's true
registration follows from the two cameras: ``H_after->before = C_before @ inv(C_after)``.
A mild non-rigid body deformation (optional) moves canvas points seen by the follow-up
photo by a smooth displacement, known exactly everywhere.

Lighting is applied in the photo frame (a light attached to the camera, a ramp and
vignetting across the frame, cast shadows), then the camera's white balance,
exposure and tone curve, then blur, sharpening, noise and JPEG compression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ._fields import blur, power, smoothstep


def mat3_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 matrix product in plain float arithmetic (the same bits on every machine, unlike BLAS)."""
    a_ = [[float(v) for v in row] for row in np.asarray(a)]
    b_ = [[float(v) for v in row] for row in np.asarray(b)]
    return np.array([[a_[i][0] * b_[0][j] + a_[i][1] * b_[1][j] + a_[i][2] * b_[2][j] for j in range(3)] for i in range(3)])


def mat3_inv(m: np.ndarray) -> np.ndarray:
    """3x3 inverse by cofactors in plain float arithmetic (machine-independent, unlike LAPACK)."""
    (a, b, c), (d, e, f), (g, h, i) = [[float(v) for v in row] for row in np.asarray(m)]
    co = [
        [e * i - f * h, c * h - b * i, b * f - c * e],
        [f * g - d * i, a * i - c * g, c * d - a * f],
        [d * h - e * g, b * g - a * h, a * e - b * d],
    ]
    det = a * co[0][0] + b * co[1][0] + c * co[2][0]
    if det == 0.0:
        raise ValueError("singular 3x3 matrix")
    return np.array([[v / det for v in row] for row in co])


@dataclass(frozen=True)
class Camera:
    """A world-to-photo homography and the parameters it was made from.

    Attributes
    ----------
    matrix : (3, 3) float64 ndarray
        Canvas pixel -> photo pixel.
    rotation : float
        Degrees, counter-clockwise in the photo.
    scale : float
        Photo pixels per canvas pixel at the centre.
    shift : (2,) tuple
        Photo pixels.
    tilt : (2,) tuple
        Perspective (keystone) terms, relative to half the photo size.
    """

    matrix: np.ndarray = field(compare=False)
    rotation: float
    scale: float
    shift: tuple[float, float]
    tilt: tuple[float, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "rotation_deg": round(self.rotation, 4),
            "scale": round(self.scale, 5),
            "shift_px": [round(v, 3) for v in self.shift],
            "tilt": [round(v, 5) for v in self.tilt],
        }


def make_camera(
    world_shape: tuple[int, int],
    photo_shape: tuple[int, int],
    rotation: float,
    scale: float,
    shift: tuple[float, float],
    tilt: tuple[float, float],
) -> Camera:
    """Build the homography of a camera pointed at the canvas centre.

    Parameters
    ----------
    world_shape, photo_shape : (H, W)
        Canvas and photo sizes.
    rotation : float
        Degrees.
    scale : float
        Photo px per canvas px.
    shift : (dx, dy)
        Photo px.
    tilt : (tx, ty)
        Perspective terms relative to half the photo's long side.

    Returns
    -------
    Camera
    """
    hw, ww = world_shape
    hp, wp = photo_shape
    half = max(hp, wp) / 2.0
    t = math.radians(rotation)
    c, s = math.cos(t) * scale, math.sin(t) * scale
    to_centre = np.array([[1.0, 0.0, -(ww - 1) / 2.0], [0.0, 1.0, -(hw - 1) / 2.0], [0.0, 0.0, 1.0]])
    a = np.array([[c, -s, shift[0]], [s, c, shift[1]], [tilt[0] / half, tilt[1] / half, 1.0]])
    from_centre = np.array([[1.0, 0.0, (wp - 1) / 2.0], [0.0, 1.0, (hp - 1) / 2.0], [0.0, 0.0, 1.0]])
    m = mat3_mul(mat3_mul(from_centre, a), to_centre)
    return Camera(m / m[2, 2], float(rotation), float(scale), (float(shift[0]), float(shift[1])), (float(tilt[0]), float(tilt[1])))


def _corners_inside(cam: Camera, world_shape: tuple[int, int], photo_shape: tuple[int, int], pad: float) -> bool:
    hp, wp = photo_shape
    hw, ww = world_shape
    corners = np.array([[0, 0, 1], [wp - 1, 0, 1], [wp - 1, hp - 1, 1], [0, hp - 1, 1]], dtype=np.float64)
    inv = mat3_inv(cam.matrix)
    w = np.stack([corners[:, 0] * inv[j, 0] + corners[:, 1] * inv[j, 1] + inv[j, 2] for j in range(3)], axis=1)
    if np.any(w[:, 2] <= 0):
        return False
    xy = w[:, :2] / w[:, 2:3]
    return bool(np.all(xy[:, 0] >= -pad) and np.all(xy[:, 0] <= ww - 1 + pad) and np.all(xy[:, 1] >= -pad) and np.all(xy[:, 1] <= hw - 1 + pad))


def sample_camera(
    rng: np.random.Generator,
    world_shape: tuple[int, int],
    photo_shape: tuple[int, int],
    *,
    rotation: float,
    scale: tuple[float, float],
    shift: float,
    tilt: float,
    base: Camera | None = None,
    pad: float = 0.0,
) -> Camera:
    """A random camera whose whole photo sees the canvas.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    world_shape, photo_shape : (H, W)
        Canvas and photo sizes.
    rotation : float
        Largest rotation, degrees.
    scale : (lo, hi)
        Scale range (multiplies ``base``'s scale).
    shift : float
        Largest shift, as a share of the photo size.
    tilt : float
        Largest perspective term.
    base : Camera, optional
        Perturb this camera (a repeat photo) instead of the nominal one.
    pad : float
        Canvas pixels the photo may see beyond the canvas edge.

    Returns
    -------
    Camera
        The perturbation is shrunk toward ``base`` until the photo lies on the canvas.
    """
    hp, wp = photo_shape
    r = rng.uniform(-rotation, rotation)
    s = math.exp(rng.uniform(math.log(scale[0]), math.log(scale[1])))
    dx, dy = rng.uniform(-shift, shift) * wp, rng.uniform(-shift, shift) * hp
    tx, ty = rng.uniform(-tilt, tilt), rng.uniform(-tilt, tilt)
    b = base or make_camera(world_shape, photo_shape, 0.0, 1.0, (0.0, 0.0), (0.0, 0.0))
    f = 1.0
    for _ in range(30):
        cam = make_camera(
            world_shape,
            photo_shape,
            b.rotation + f * r,
            b.scale * s**f,
            (b.shift[0] + f * dx, b.shift[1] + f * dy),
            (b.tilt[0] + f * tx, b.tilt[1] + f * ty),
        )
        if _corners_inside(cam, world_shape, photo_shape, pad):
            return cam
        f *= 0.8
    return b


@dataclass(frozen=True)
class Deformation:
    """A smooth non-rigid displacement of the canvas (the patient moved a little).

    ``d(q) = sum_k v_k * (1 - |q - c_k|^2 / r_k^2)^2`` inside each bump's radius.

    Attributes
    ----------
    centres : (K, 2) float64 ndarray
        Bump centres, canvas px.
    radii : (K,) float64 ndarray
        Bump radii, canvas px.
    vectors : (K, 2) float64 ndarray
        Peak displacement of each bump, canvas px.
    """

    centres: np.ndarray = field(compare=False)
    radii: np.ndarray = field(compare=False)
    vectors: np.ndarray = field(compare=False)

    def displace(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Displacement ``(dx, dy)`` at canvas points ``(x, y)`` (float64 arrays)."""
        dx = np.zeros_like(x, dtype=np.float64)
        dy = np.zeros_like(y, dtype=np.float64)
        for (cx, cy), r, (vx, vy) in zip(self.centres, self.radii, self.vectors):
            t = ((x - cx) ** 2 + (y - cy) ** 2) * (1.0 / (r * r))
            b = np.maximum(1.0 - t, 0.0)
            b = b * b
            dx += vx * b
            dy += vy * b
        return dx, dy

    def max_displacement(self) -> float:
        return float(np.sqrt((self.vectors**2).sum(axis=1)).sum()) if len(self.vectors) else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "centres_px": np.round(self.centres, 3).tolist(),
            "radii_px": np.round(self.radii, 3).tolist(),
            "vectors_px": np.round(self.vectors, 4).tolist(),
        }


def sample_deformation(rng: np.random.Generator, world_shape: tuple[int, int], amplitude: float) -> Deformation:
    """A few broad bumps whose displacements total at most ``amplitude`` canvas px.

    The slope stays below 0.1, so the deformation is invertible and mild.
    """
    hw, ww = world_shape
    k = int(rng.integers(2, 5))
    centres = np.stack([rng.uniform(0.2, 0.8, k) * ww, rng.uniform(0.2, 0.8, k) * hw], axis=1)
    radii = rng.uniform(0.3, 0.6, k) * max(hw, ww)
    ang = rng.uniform(0, 2 * math.pi, k)
    mag = rng.uniform(0.3, 1.0, k)
    mag = mag / mag.sum() * amplitude
    # Keep every bump's peak slope (about 1.54 |v| / r) below 0.1.
    mag = np.minimum(mag, 0.1 * radii / 1.54)
    vectors = np.stack([mag * np.cos(ang), mag * np.sin(ang)], axis=1)
    return Deformation(centres, radii, vectors)


def photo_to_world(cam: Camera, photo_shape: tuple[int, int], deformation: Deformation | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Canvas coordinates of every photo pixel centre (maps for :func:`cv2.remap`).

    Parameters
    ----------
    cam : Camera
        World -> photo camera.
    photo_shape : (H, W)
        Photo size.
    deformation : Deformation, optional
        The canvas point shown at a photo pixel is ``q + d(q)`` where ``q`` is what
        the camera alone would show.

    Returns
    -------
    map_x, map_y : (H, W) float32 ndarray
    """
    hp, wp = photo_shape
    inv = mat3_inv(cam.matrix)
    x = np.arange(wp, dtype=np.float64)[None, :]
    y = np.arange(hp, dtype=np.float64)[:, None]
    den = inv[2, 0] * x + inv[2, 1] * y + inv[2, 2]
    qx = (inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]) / den
    qy = (inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]) / den
    if deformation is not None:
        dx, dy = deformation.displace(qx, qy)
        qx, qy = qx + dx, qy + dy
    return qx.astype(np.float32), qy.astype(np.float32)


def remap(layer: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Sample a canvas layer at photo pixels (bilinear; reflected beyond the canvas)."""
    return cv2.remap(layer, maps[0], maps[1], interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


# --------------------------------------------------------------------------- lighting


@dataclass(frozen=True)
class Lighting:
    """Light, camera white balance and exposure of one photo.

    Attributes
    ----------
    direction : (3,) tuple
        Unit vector toward the light in the camera frame (z toward the camera).
    ambient, diffuse : float
        Ambient and Lambertian light levels.
    light_rgb : (3,) tuple
        Light colour (linear gains).
    specular : float
        Strength of specular highlights on oily skin.
    shininess : int
        Phong exponent (power of two).
    ramp : (3,) tuple
        Brightness ramp across the frame: ``1 + a x + b y`` (x, y in -1..1) and the
        vignetting ``c r^2``.
    white_balance : (3,) tuple
        Camera gains per channel (a wrong white balance is a colour cast).
    exposure : float
        Overall gain.
    contrast : float
        Tone-curve S shape, 0..1.
    shadows : tuple
        Cast shadows: ``(angle, offset, softness, strength, curvature, wave, end, spread)``
        in photo units: the edge bends (``curvature``) and turns (``wave``, a cubic
        term), the occluder ends at ``end`` along the edge (beyond 1: across the whole
        frame) and the penumbra widens along the edge by ``spread``.
    fill : float
        Level of a second, softer Lambertian light (a clinic's fill light or a bright wall).
    fill_direction : (3,) tuple
        Unit vector toward the fill light, camera frame, usually from the key light's other side.
    subsurface : float
        Light wrap of skin, 0..1: light scattered under the skin reaches past the
        terminator, more in red than in green and blue, so shading is softer and
        redder in the red channel towards the silhouette.
    """

    direction: tuple[float, float, float]
    ambient: float
    diffuse: float
    light_rgb: tuple[float, float, float]
    specular: float
    shininess: int
    ramp: tuple[float, float, float]
    white_balance: tuple[float, float, float]
    exposure: float
    contrast: float
    shadows: tuple[tuple[float, ...], ...]
    fill: float = 0.0
    fill_direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    subsurface: float = 0.0

    def to_dict(self) -> dict[str, object]:
        def r(v: object) -> object:
            if isinstance(v, float):
                return round(v, 5)
            if isinstance(v, tuple):
                return [r(x) for x in v]
            return v

        return {k: r(v) for k, v in self.__dict__.items()}


# How far the key light wraps past the terminator per channel (times ``Lighting.subsurface``).
_WRAP = (0.6, 0.25, 0.15)


def _colour_temperature_rgb(kelvin: float) -> tuple[float, float, float]:
    """Approximate linear RGB of a light of the given colour temperature, green = 1."""
    # A smooth fit over 2500..9000 K of blackbody chromaticities (relative to D65).
    t = (kelvin - 6500.0) / 3500.0
    r = 1.0 - 0.28 * t + 0.06 * t * t
    b = 1.0 + 0.42 * t - 0.08 * t * t
    return (max(r, 0.3), 1.0, max(b, 0.3))


def _shadow(rng: np.random.Generator, max_strength: float) -> tuple[float, ...]:
    """One cast shadow (see :attr:`Lighting.shadows`): a lamp arm, a hand or the photographer."""
    return (
        rng.uniform(0, 2 * math.pi),
        rng.uniform(-0.9, 0.9),
        rng.uniform(0.04, 0.3),
        rng.uniform(0.2, max_strength),
        rng.uniform(-1.2, 1.2),
        rng.uniform(-0.6, 0.6),
        rng.uniform(-0.4, 1.6),
        rng.uniform(0.0, 1.5),
    )


def sample_lighting(rng: np.random.Generator, base: Lighting | None = None, change: float = 1.0) -> Lighting:
    """Random lighting; with ``base``, a repeat photo's lighting that differs by ``change``."""
    if base is None:
        az = rng.uniform(0, 2 * math.pi)
        el = math.radians(rng.uniform(50, 88))
        kelvin = rng.uniform(2800, 7500)
        wb_kelvin = kelvin + rng.normal(0, 900)
        light = _colour_temperature_rgb(kelvin)
        wb_ref = _colour_temperature_rgb(wb_kelvin)
        wb = (1.0 / wb_ref[0], 1.0, 1.0 / wb_ref[2])
        n_sh = int(rng.random() < 0.3) + int(rng.random() < 0.1)
        shadows = tuple(_shadow(rng, 0.55) for _ in range(n_sh))
        # Key light plus a weaker fill from the other side (clinic lamps, flash and a wall).
        faz = az + math.pi + rng.uniform(-0.7, 0.7)
        shininess = int(rng.choice([8, 16, 32, 64]))
        fel = math.radians(rng.uniform(35, 80))
        return Lighting(
            direction=(math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)),
            ambient=float(rng.uniform(0.15, 0.35)),
            diffuse=float(rng.uniform(0.55, 0.85)),
            light_rgb=light,
            # A broad lobe is dimmer than a tight one (energy conservation): broad sheen, small glints.
            specular=float(rng.uniform(0.0, 0.3) * math.sqrt(shininess / 64.0)),
            shininess=shininess,
            ramp=(float(rng.normal(0, 0.12)), float(rng.normal(0, 0.12)), float(rng.uniform(0.0, 0.35))),
            white_balance=wb,
            exposure=float(math.exp(rng.normal(-0.22, 0.2))),
            contrast=float(rng.uniform(0.0, 0.5)),
            shadows=shadows,
            fill=float(rng.uniform(0.08, 0.35)),
            fill_direction=(math.cos(faz) * math.cos(fel), math.sin(faz) * math.cos(fel), math.sin(fel)),
            subsurface=float(rng.uniform(0.2, 0.6)),
        )
    c = change
    bx, by, bz = base.direction
    az = math.atan2(by, bx) + rng.normal(0, 0.6 * c)
    el = min(math.radians(89), max(math.radians(45), math.asin(max(-1.0, min(1.0, bz))) + rng.normal(0, 0.12 * c)))
    k_shift = rng.normal(0, 700 * c)
    lr = _colour_temperature_rgb(6500 + k_shift)
    light = (base.light_rgb[0] * lr[0], base.light_rgb[1], base.light_rgb[2] * lr[2])
    wbr = _colour_temperature_rgb(6500 + rng.normal(0, 600 * c))
    wb = (base.white_balance[0] / wbr[0], base.white_balance[1], base.white_balance[2] / wbr[2])
    n_sh = int(rng.random() < 0.3) + int(rng.random() < 0.1)
    new_shadows = tuple(_shadow(rng, 0.5) for _ in range(n_sh))
    shadows = new_shadows if rng.random() < min(1.0, 0.6 * c) else base.shadows
    ramp_n = rng.normal(0, 1.0, 3)
    fx, fy, fz = base.fill_direction
    faz = math.atan2(fy, fx) + rng.normal(0, 0.5 * c)
    fel = min(math.radians(85), max(math.radians(30), math.asin(max(-1.0, min(1.0, fz))) + rng.normal(0, 0.12 * c)))
    return Lighting(
        direction=(math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)),
        ambient=float(np.clip(base.ambient + rng.normal(0, 0.06 * c), 0.15, 0.6)),
        diffuse=float(np.clip(base.diffuse + rng.normal(0, 0.08 * c), 0.4, 0.95)),
        light_rgb=light,
        specular=float(np.clip(base.specular + rng.normal(0, 0.1 * c), 0.0, 0.5)),
        shininess=base.shininess,
        ramp=(
            float(base.ramp[0] + 0.1 * c * ramp_n[0]),
            float(base.ramp[1] + 0.1 * c * ramp_n[1]),
            float(np.clip(base.ramp[2] + 0.1 * c * ramp_n[2], 0.0, 0.4)),
        ),
        white_balance=wb,
        exposure=float(base.exposure * math.exp(rng.normal(0.0, 0.2 * c))),
        contrast=float(np.clip(base.contrast + rng.normal(0, 0.1 * c), 0.0, 0.6)),
        shadows=shadows,
        fill=float(np.clip(base.fill + rng.normal(0, 0.06 * c), 0.0, 0.45)),
        fill_direction=(math.cos(faz) * math.cos(fel), math.sin(faz) * math.cos(fel), math.sin(fel)),
        subsurface=base.subsurface,
    )


def shade(
    colour: np.ndarray,
    normal_xy: np.ndarray,
    oil: np.ndarray,
    lighting: Lighting,
    camera_rotation_deg: float,
) -> np.ndarray:
    """Light a photo-frame albedo: ambient + key + fill, ramp, shadows, specular highlights.

    The key light's Lambert term wraps past the terminator by ``lighting.subsurface``
    times ``_WRAP`` per channel (subsurface scattering: red light travels furthest in
    skin), so surfaces turning away darken more slowly and redden.

    Parameters
    ----------
    colour : (H, W, 3) float32
        Linear-RGB albedo sampled into the photo.
    normal_xy : (H, W, 2) float32
        Surface normal x, y components in canvas axes.
    oil : (H, W) float32
        Specular strength.
    lighting : Lighting
        The light.
    camera_rotation_deg : float
        The camera's rotation (the light turns with the camera).

    Returns
    -------
    (H, W, 3) float32, linear RGB before white balance and exposure
    """
    h, w = oil.shape
    lx, ly, lz = lighting.direction
    t = math.radians(-camera_rotation_deg)
    ct, st = math.cos(t), math.sin(t)
    wx, wy = ct * lx - st * ly, st * lx + ct * ly
    nx, ny = normal_xy[..., 0], normal_xy[..., 1]
    nz = np.sqrt(np.maximum(1.0 - nx * nx - ny * ny, 0.0))
    ndl = nx * np.float32(wx) + ny * np.float32(wy) + nz * np.float32(lz)
    fx, fy, fz = lighting.fill_direction
    fill = np.maximum(nx * np.float32(ct * fx - st * fy) + ny * np.float32(st * fx + ct * fy) + nz * np.float32(fz), 0.0)
    fill *= np.float32(lighting.fill)
    fill += np.float32(lighting.ambient)
    light = np.empty((h, w, 3), dtype=np.float32)
    for ch in range(3):
        wrap = np.float32(lighting.subsurface * _WRAP[ch])
        light[..., ch] = np.maximum((ndl + wrap) * (np.float32(lighting.diffuse) / (np.float32(1.0) + wrap)), 0.0) + fill
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    a, b, v = lighting.ramp
    ramp = 1.0 + np.float32(a) * xs + np.float32(b) * ys - np.float32(v) * (xs * xs + ys * ys) * np.float32(0.5)
    light *= np.maximum(ramp, 0.2)[..., None]
    for ang, off, soft, strength, curv, wave, end, spread in lighting.shadows:
        ca, sa = np.float32(math.cos(ang)), np.float32(math.sin(ang))
        along = xs * ca + ys * sa
        across = -xs * sa + ys * ca
        edge = along - np.float32(off) + across * across * (np.float32(curv * 0.5) + np.float32(wave) * across)
        # The penumbra widens away from the occluder; the occluder ends somewhere along the edge.
        penumbra = np.float32(soft) * (np.float32(1.0) + np.float32(spread * 0.5) * (across + np.float32(1.0)))
        cast = smoothstep(edge / penumbra + np.float32(0.5)) * smoothstep((np.float32(end) - across) * np.float32(1.0 / (2.0 * soft + 0.1)) + np.float32(0.5))
        light *= (1.0 - np.float32(strength) * cast)[..., None]
    # Blinn-Phong with the viewer along z.
    hx, hy, hz = wx, wy, lz + 1.0
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    ndh = np.maximum((nx * np.float32(hx) + ny * np.float32(hy) + nz * np.float32(hz)) * np.float32(1.0 / hn), 0.0)
    spec = np.float32(lighting.specular) * oil * power(ndh, lighting.shininess) * np.maximum(ramp, 0.2)
    lr = np.asarray(lighting.light_rgb, dtype=np.float32)
    return (colour * light + spec[..., None]) * lr


@dataclass(frozen=True)
class Sensor:
    """Camera optics and processing of one photo.

    Attributes
    ----------
    blur : float
        Defocus blur sigma, photo px.
    motion : float
        Motion-blur length, photo px (0 none).
    motion_angle : float
        Motion direction, degrees.
    sharpen : float
        Unsharp-mask amount (phone cameras sharpen).
    noise : float
        Luminance noise std at mid-grey, 8-bit levels.
    chroma_noise : float
        Colour noise std, 8-bit levels.
    jpeg_quality : int or None
        JPEG quality, None for no compression.
    """

    blur: float
    motion: float
    motion_angle: float
    sharpen: float
    noise: float
    chroma_noise: float
    jpeg_quality: int | None

    def to_dict(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def sample_sensor(rng: np.random.Generator, photo_shape: tuple[int, int], artefacts: float = 1.0) -> Sensor:
    """Random optics and processing; ``artefacts`` scales blur, noise and compression (0 = clean)."""
    unit = max(photo_shape) / 1024.0
    a = artefacts
    jpeg = None
    if a > 0 and rng.random() < 0.85:
        jpeg = int(round(97 - a * rng.uniform(0, 40)))
    return Sensor(
        blur=float(a * rng.uniform(0.0, 1.4) * unit ** 0.5),
        motion=float(a * rng.uniform(2.0, 6.0) * unit ** 0.5) if rng.random() < 0.1 * a else 0.0,
        motion_angle=float(rng.uniform(0, 180)),
        sharpen=float(a * rng.uniform(0.0, 0.9)),
        noise=float(a * rng.uniform(0.5, 5.0)),
        chroma_noise=float(a * rng.uniform(0.0, 2.5)),
        jpeg_quality=jpeg,
    )


# Linear light the tone curve accepts before it saturates (phones keep highlight headroom).
_HEADROOM = 2.0
_LUT_SIZE = 16384


def _srgb_lut(contrast: float) -> np.ndarray:
    """Linear (0.._HEADROOM in _LUT_SIZE steps) -> 8-bit sRGB levels as float32.

    An S-curve sets the contrast; above 0.7 a shoulder rolls highlights off towards
    white (as phone tone mapping does) instead of clipping pale skin flat.
    """
    lin = np.arange(_LUT_SIZE, dtype=np.float64) * (_HEADROOM / (_LUT_SIZE - 1))
    knee = 0.7
    over = np.maximum(lin - knee, 0.0)
    lin = np.where(lin <= knee, lin, knee + (1.0 - knee) * (1.0 - np.exp(-over / (1.0 - knee))))
    s = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1.0 / 2.4) - 0.055)
    s = (1.0 - contrast) * s + contrast * (s * s * (3.0 - 2.0 * s))
    # Rounded to 1/64 of a level so that libm differences cannot change a pixel.
    return (np.round(s * 255.0 * 64.0) / 64.0).astype(np.float32)


def develop(
    linear_rgb: np.ndarray,
    lighting: Lighting,
    sensor: Sensor,
    rng: np.random.Generator,
) -> np.ndarray:
    """White balance, exposure, tone curve, blur, sharpening, noise and JPEG of a photo.

    Parameters
    ----------
    linear_rgb : (H, W, 3) float32
        Lit scene in linear light.
    lighting : Lighting
        White balance, exposure and contrast.
    sensor : Sensor
        Optics and processing.
    rng : numpy.random.Generator
        Noise source.

    Returns
    -------
    (H, W, 3) uint8 RGB
    """
    top = _LUT_SIZE - 1
    gains = np.asarray(lighting.white_balance, dtype=np.float32) * np.float32(lighting.exposure * top / _HEADROOM)
    lin = linear_rgb * gains
    lin += np.float32(0.5)
    np.clip(lin, 0.0, float(top), out=lin)
    img = _srgb_lut(lighting.contrast)[lin.astype(np.uint16)]
    if sensor.blur >= 0.3:
        img = blur(img, sensor.blur)
    if sensor.motion >= 1.0:
        n = int(round(sensor.motion)) | 1
        k = np.zeros((n, n), dtype=np.float32)
        k[n // 2, :] = 1.0 / n
        rot = cv2.getRotationMatrix2D(((n - 1) / 2.0, (n - 1) / 2.0), sensor.motion_angle, 1.0)
        k = cv2.warpAffine(k, rot, (n, n), flags=cv2.INTER_LINEAR)
        k /= k.sum()
        img = cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT)
    if sensor.sharpen > 0.05:
        img = img + np.float32(sensor.sharpen) * (img - blur(img, 1.2))
    h, w = img.shape[:2]
    if sensor.noise > 0 or sensor.chroma_noise > 0:
        lum_n = rng.standard_normal((h, w), dtype=np.float32)
        # Colour noise survives demosaicing as soft blotches: draw it at half size.
        chroma = rng.standard_normal(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32)
        chroma = cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR)
        # Shot noise grows with the square root of the signal (green stands for it); read noise is flat.
        level = np.clip(img[..., 1] * np.float32(1.0 / 255.0), 0.0, 1.0)
        sigma = np.sqrt(level)
        sigma *= np.float32(0.9 * sensor.noise)
        sigma += np.float32(0.35 * sensor.noise)
        sigma *= lum_n
        chroma *= np.float32(sensor.chroma_noise)
        chroma += sigma[..., None]
        img += chroma
    out = np.clip(img + np.float32(0.5), 0.0, 255.0).astype(np.uint8)
    if sensor.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(sensor.jpeg_quality)])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(out)
