"""Body views, silhouettes, relief and backgrounds of a phantom's world.

A phantom is drawn on a *world canvas*: a planar picture of the scene (patient and
background) a little larger than the photo, in which the body is described in
millimetres and mapped to canvas pixels with ``mm_per_px``. Cameras then photograph
the canvas (see :mod:`._camera`). This module builds the parts of the world that do
not depend on disease: the body silhouette and its relief (heights, for shading),
anatomical landmarks that tint the skin (nipples, lips, eyelids), where hair can
grow and which way it lies, and the background with clothing and other occluders.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ._fields import blur, fractal, noise, oriented_noise, smoothstep

#: Body views the generator draws.
VIEWS: tuple[str, ...] = ("back", "chest", "limb", "scalp", "face")

#: Backgrounds the generator draws (skin-coloured and reddish ones included on purpose).
BACKGROUNDS: tuple[str, ...] = ("wall", "sheet", "clothing", "drape", "skin_like", "reddish")

# Width of the body region (mm) that a whole-view photo frames, per view.
_WHOLE_FRAME_MM = {"back": (560.0, 760.0), "chest": (560.0, 760.0), "limb": (320.0, 620.0), "scalp": (250.0, 330.0), "face": (105.0, 135.0)}
# A clinic photo of an arm or of the legs fills most of the frame with the limb(s).
_WHOLE_LIMB_MM = {"arm": (160.0, 250.0), "leg": (400.0, 560.0)}
# Width framed by a close-up.
_CLOSE_FRAME_MM = {"back": (70.0, 260.0), "chest": (70.0, 260.0), "limb": (60.0, 220.0), "scalp": (60.0, 170.0), "face": (40.0, 70.0)}


@dataclass(frozen=True)
class Framing:
    """Where the world canvas sits on the body.

    Attributes
    ----------
    view : str
        One of :data:`VIEWS`.
    mm_per_px : float
        Size of a canvas pixel on the body.
    focus_mm : (2,) tuple
        Body point (mm, body coordinates) at the canvas centre.
    close_up : bool
        A close-up (skin fills the frame) rather than a whole-region shot.
    world_shape : (H, W)
        Canvas size in pixels.
    part : str
        Which body part a *limb* view shows, ``"arm"`` or ``"leg"`` (the framing
        depends on it); ``""`` for the other views.
    """

    view: str
    mm_per_px: float
    focus_mm: tuple[float, float]
    close_up: bool
    world_shape: tuple[int, int]
    part: str = ""

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "view": self.view,
            "mm_per_px": round(self.mm_per_px, 6),
            "close_up": self.close_up,
            "focus_mm": [round(v, 3) for v in self.focus_mm],
        }
        if self.part:
            out["part"] = self.part
        return out


@dataclass(frozen=True)
class Body:
    """Disease-independent body layers on the world canvas (all float32).

    Attributes
    ----------
    coverage : (H, W)
        Visible skin, 0..1 (the body minus clothing and other occluders in front of it).
    clothing : (H, W)
        Clothing in front of or around the body, 0..1 (not skin).
    height : (H, W)
        Relief in canvas pixels, for shading.
    tint : (H, W, 3)
        Multiplicative skin colour of anatomical landmarks (areolae, navel, lids),
        ambient occlusion of creases and sun tan (1 where there is none).
    hair_base : (H, W)
        Where hair grows in this view when there is no hair loss, 0..1.
    flow : (H, W, 2)
        Unit direction in which hair lies (x, y).
    redness : (H, W)
        Physiological flush (cheeks, knees, elbows), 0..1: not a lesion.
    lesion_ok : (H, W) bool
        Where lesions may be centred (skin, away from eyes and lips).
    hair_kind : str
        ``"scalp"``, ``"face"`` or ``"body"``: which hair this view grows.
    male : bool
        Sets beard and body-hair patterns.
    oil_gain : float
        Multiplies the skin's sheen: a bald scalp is oilier (and smoother) than the
        trunk and shines in a broad highlight where the light is.
    paint : callable, optional
        Paints extra detail that is not skin into the background (linear RGB, (H, W, 3),
        returned): the open eyes of a face, whose openings are holes in ``coverage``.
    """

    coverage: np.ndarray
    clothing: np.ndarray
    height: np.ndarray
    tint: np.ndarray
    hair_base: np.ndarray
    flow: np.ndarray
    redness: np.ndarray
    lesion_ok: np.ndarray
    hair_kind: str
    male: bool
    oil_gain: float = 1.0
    paint: Callable[[np.ndarray], np.ndarray] | None = field(default=None, compare=False, repr=False)


class _Canvas:
    """Body-millimetre coordinates of every canvas pixel, and drawing in millimetres."""

    def __init__(self, framing: Framing) -> None:
        self.f = framing
        h, w = framing.world_shape
        self.shape = (h, w)
        s = framing.mm_per_px
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        self.x = (np.arange(w, dtype=np.float32) - np.float32(cx)) * np.float32(s) + np.float32(framing.focus_mm[0])
        self.y = (np.arange(h, dtype=np.float32) - np.float32(cy)) * np.float32(s) + np.float32(framing.focus_mm[1])
        self.xx = np.broadcast_to(self.x[None, :], self.shape)
        self.yy = np.broadcast_to(self.y[:, None], self.shape)

    def px(self, pts_mm: np.ndarray) -> np.ndarray:
        """Body mm ``(x, y)`` -> canvas pixel coordinates."""
        h, w = self.shape
        p = np.asarray(pts_mm, dtype=np.float64)
        out = np.empty_like(p)
        out[..., 0] = (p[..., 0] - self.f.focus_mm[0]) / self.f.mm_per_px + (w - 1) / 2.0
        out[..., 1] = (p[..., 1] - self.f.focus_mm[1]) / self.f.mm_per_px + (h - 1) / 2.0
        return out

    def mm(self, v: float) -> float:
        """A length in mm as canvas pixels."""
        return v / self.f.mm_per_px

    def fill(self, poly_mm: np.ndarray) -> np.ndarray:
        """Antialiased coverage (0..1) of a closed polygon given in body mm."""
        canvas = np.zeros(self.shape, dtype=np.uint8)
        pts = self.px(poly_mm)
        # Clamp far-away vertices so OpenCV's fixed-point drawing cannot overflow.
        lim = 8.0 * max(self.shape)
        pts = np.clip(pts, -lim, lim)
        shift = 3
        cv2.fillPoly(canvas, [np.round(pts * (1 << shift)).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=shift)
        return canvas.astype(np.float32) * np.float32(1.0 / 255.0)

    def _window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Canvas rows and columns covering the body-mm box ``[x0, x1] x [y0, y1]`` (None if off canvas)."""
        h, w = self.shape
        s = self.f.mm_per_px
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        c0 = max(0, int(math.floor((x0 - self.f.focus_mm[0]) / s + cx)) - 1)
        c1 = min(w, int(math.ceil((x1 - self.f.focus_mm[0]) / s + cx)) + 2)
        r0 = max(0, int(math.floor((y0 - self.f.focus_mm[1]) / s + cy)) - 1)
        r1 = min(h, int(math.ceil((y1 - self.f.focus_mm[1]) / s + cy)) + 2)
        if c1 <= c0 or r1 <= r0:
            return None
        return slice(r0, r1), slice(c0, c1)

    def bump(self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, *, out: np.ndarray | None = None, amp: float = 1.0) -> np.ndarray:
        """Smooth bump ``(1 - r^2)^2`` (0 outside) of an ellipse with semi-axes ``ax``, ``ay`` mm.

        With ``out``, ``amp`` times the bump is added to ``out`` inside the bump's box only
        (much cheaper than adding a full-canvas layer) and ``out`` is returned.
        """
        add = out is not None
        if out is None:
            out = np.zeros(self.shape, dtype=np.float32)
        ext = max(ax, ay)
        win = self._window(cx - ext, cx + ext, cy - ext, cy + ext)
        if win is None:
            return out
        rs, cs = win
        ca, sa = math.cos(angle), math.sin(angle)
        dx = self.x[None, cs] - np.float32(cx)
        dy = self.y[rs, None] - np.float32(cy)
        u = (dx * np.float32(ca) + dy * np.float32(sa)) * np.float32(1.0 / ax)
        v = (-dx * np.float32(sa) + dy * np.float32(ca)) * np.float32(1.0 / ay)
        r2 = np.minimum(u * u + v * v, 1.0)
        t = 1.0 - r2
        if add:
            out[rs, cs] += np.float32(amp) * (t * t)
        else:
            out[rs, cs] = t * t
        return out

    def ridge(self, p0: tuple[float, float], p1: tuple[float, float], width: float, *, out: np.ndarray | None = None, amp: float = 1.0) -> np.ndarray:
        """Smooth ridge of half-width ``width`` mm along the segment ``p0``-``p1`` (1 on the line).

        With ``out``, ``amp`` times the ridge is added to ``out`` inside its box (see :meth:`bump`).
        """
        add = out is not None
        if out is None:
            out = np.zeros(self.shape, dtype=np.float32)
        x0, y0 = p0
        x1, y1 = p1
        win = self._window(min(x0, x1) - width, max(x0, x1) + width, min(y0, y1) - width, max(y0, y1) + width)
        if win is None:
            return out
        rs, cs = win
        xx = self.x[None, cs]
        yy = self.y[rs, None]
        dx, dy = x1 - x0, y1 - y0
        ln2 = dx * dx + dy * dy
        t = ((xx - np.float32(x0)) * np.float32(dx) + (yy - np.float32(y0)) * np.float32(dy)) * np.float32(1.0 / ln2)
        t = np.clip(t, 0.0, 1.0)
        ex = xx - (np.float32(x0) + t * np.float32(dx))
        ey = yy - (np.float32(y0) + t * np.float32(dy))
        r2 = np.minimum((ex * ex + ey * ey) * np.float32(1.0 / (width * width)), 1.0)
        q = 1.0 - r2
        if add:
            out[rs, cs] += np.float32(amp) * (q * q)
        else:
            out[rs, cs] = q * q
        return out


def chaikin(points: np.ndarray, iterations: int = 3, closed: bool = True) -> np.ndarray:
    """Corner-cutting smoothing of a polygon (Chaikin), exact arithmetic only."""
    p = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0) if closed else p[1:]
        a = p if closed else p[:-1]
        new = np.empty((2 * len(a), 2))
        new[0::2] = 0.75 * a + 0.25 * q
        new[1::2] = 0.25 * a + 0.75 * q
        p = new if closed else np.vstack([points[:1], new, points[-1:]])
    return p


def _ellipse_poly(cx: float, cy: float, a: float, b: float, angle: float, rng: np.random.Generator, jitter: float, n: int = 28) -> np.ndarray:
    t = np.arange(n) * (2.0 * math.pi / n)
    r = 1.0 + jitter * rng.standard_normal(n)
    ca, sa = math.cos(angle), math.sin(angle)
    pts = []
    for ti, ri in zip(t, r):
        x, y = a * ri * math.cos(ti), b * ri * math.sin(ti)
        pts.append((cx + ca * x - sa * y, cy + sa * x + ca * y))
    return chaikin(np.array(pts), 3)


def _tube_poly(p0: tuple[float, float], p1: tuple[float, float], w0: float, w1: float, rng: np.random.Generator, n: int = 10) -> np.ndarray:
    """A tapered tube (arm, leg) from p0 to p1 with half-widths w0 -> w1 mm, slightly wavy."""
    x0, y0 = p0
    x1, y1 = p1
    ln = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / ln, (y1 - y0) / ln
    nx, ny = -uy, ux
    left, right = [], []
    wob = 0.05 * rng.standard_normal((n + 1, 2))
    for i in range(n + 1):
        t = i / n
        w = (w0 + (w1 - w0) * t) * (1.0 + wob[i, 0])
        # a muscle belly in the first third
        w *= 1.0 + 0.10 * math.sin(math.pi * min(1.0, t * 1.6))
        cx, cy = x0 + ux * ln * t, y0 + uy * ln * t
        left.append((cx + nx * w, cy + ny * w))
        right.append((cx - nx * w * (1.0 + wob[i, 1]), cy - ny * w * (1.0 + wob[i, 1])))
    # A rounded cap at the start (a limb's root hidden in the shoulder or hip).
    cap = []
    for i in range(1, 8):
        a = math.pi * i / 8
        w = w0 * (1.0 + wob[0, 0])
        cap.append((x0 + nx * w * math.cos(a) - ux * w * math.sin(a), y0 + ny * w * math.cos(a) - uy * w * math.sin(a)))
    pts = np.array(left + right[::-1] + cap[::-1])
    return chaikin(pts, 2)


def _cylinder_height(coverage: np.ndarray, radius_px: float, *, depth: float = 1.0, smooth: float = 0.0) -> np.ndarray:
    """Relief of a rounded body part: an elliptical cross-section from its edge.

    Parameters
    ----------
    coverage : (H, W) float32
        The part's coverage, 0..1.
    radius_px : float
        Distance from the edge (canvas px) over which the surface turns from
        edge-on to facing the camera.
    depth : float
        Height of the cross-section relative to ``radius_px`` (1 = circular; less is flatter).
    smooth : float
        Blur of the distance to the edge, relative to ``radius_px``: it rounds off the
        crease a distance transform has along the part's midline (a visible ridge in
        the shading otherwise).

    Returns
    -------
    (H, W) float32 ndarray
        Height in canvas px, 0 outside the part.
    """
    inside = (coverage >= 0.5).astype(np.uint8)
    if not inside.any():
        return np.zeros(coverage.shape, dtype=np.float32)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_5)
    if not inside.all():
        # The distance from a pixel mask steps where the outline crosses a row or column
        # (a staircase), which the steep rim shades as a row of ticks along a shallow
        # edge: a signed distance blurred over a pixel follows the outline smoothly.
        sdf = dist - cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_5)
        sdf += np.float32(0.5)
        sdf -= inside  # dist - 0.5 inside, 0.5 - (distance outside) outside
        dist = blur(sdf, 2.5)
        dist += np.float32(0.5)
        np.maximum(dist, np.float32(0.5), out=dist)
        dist *= inside
    r = np.float32(max(radius_px, 1.0))
    # Beyond 2 r the surface is flat anyway; a canvas with no edge gives no finite distance.
    dist = np.minimum(dist, np.float32(2.0) * r)
    if smooth > 0.0:
        # Smoothed only inside: the silhouette keeps its edge-on slope.
        dist = np.minimum(dist, blur(dist, float(smooth * r)) + np.float32(0.5)) * inside
    t = np.minimum(dist / r, 1.0)
    if smooth <= 0.0:
        q = 1.0 - t
        return np.float32(depth) * r * np.sqrt(np.maximum(1.0 - q * q, 0.0))
    # A circle turns exactly edge-on at the silhouette, which a photo shows as a drawn
    # outline; a small offset keeps the last pixels steep but finite.
    e = np.float32(0.05)
    s = t * (np.float32(2.0) - t)
    norm = np.float32(1.0 / (math.sqrt(1.05) - math.sqrt(0.05)))
    return np.float32(depth) * r * (np.sqrt(s + e) - np.sqrt(e)) * norm


def _occlusion(height: np.ndarray, inside: np.ndarray, scales_px: tuple[float, ...], strength: float) -> np.ndarray:
    """Ambient occlusion of a relief: how much darker creases and grooves are (1 = open).

    A point lower than the surrounding surface (its coverage-weighted local mean at
    each scale) sees less of the sky: spine groove, armpits, the crease between arm
    and trunk, folds under the breasts and at the waist.

    Parameters
    ----------
    height : (H, W) float32
        Relief in canvas px.
    inside : (H, W) float32
        Where the body is, 0..1 (the mean is taken over the body only).
    scales_px : tuple of float
        Neighbourhood radii in canvas px.
    strength : float
        Darkening of a crease as deep as its neighbourhood is wide.

    Returns
    -------
    (H, W) float32 ndarray in (0, 1]
    """
    m = inside.astype(np.float32)
    hm = height * m
    dark = np.zeros(height.shape, dtype=np.float32)
    for s in scales_px:
        mean = blur(hm, s) / np.maximum(blur(m, s), np.float32(1e-3))
        dark += np.clip((mean - height) * np.float32(1.0 / s), 0.0, 1.0)
    ao = 1.0 - np.float32(strength) * np.minimum(dark, 1.0)
    return np.clip(ao, 0.3, 1.0).astype(np.float32)


# Sun-tan colour (multiplier of the albedo at full tan) per skin type: fair skin reddens, darker skin browns.
_TAN = {1: (0.93, 0.84, 0.82), 2: (0.88, 0.78, 0.70), 3: (0.82, 0.72, 0.62), 4: (0.84, 0.76, 0.68), 5: (0.88, 0.83, 0.78), 6: (0.92, 0.89, 0.86)}


# Albedo multiplier of the soles per skin type (thick plantar skin with little melanin).
_SOLE = {1: (1.02, 0.97, 0.96), 2: (1.04, 0.99, 0.97), 3: (1.12, 1.08, 1.05), 4: (1.3, 1.25, 1.2), 5: (1.6, 1.5, 1.45), 6: (1.9, 1.75, 1.65)}


def _skin_tint(landmarks: np.ndarray | None, ao: np.ndarray, sun: np.ndarray, fitz: int, amount: float) -> np.ndarray:
    """Albedo multiplier: landmark colours x ambient occlusion x sun tan (``sun`` 0..1)."""
    tan = (np.asarray(_TAN[int(fitz)], dtype=np.float32) - np.float32(1.0)) * np.float32(amount)
    out = sun[..., None] * tan
    out += np.float32(1.0)
    out *= ao[..., None]
    if landmarks is not None:
        out *= landmarks
    return out


def _smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth maximum: ``max(a, b)`` rounded over a band of width ``k``."""
    kk = np.float32(max(k, 1e-3))
    hh = np.maximum(kk - np.abs(a - b), 0.0) * (np.float32(1.0) / kk)
    return np.maximum(a, b) + hh * hh * kk * np.float32(0.25)


def _flow_from_angle_field(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    n = np.sqrt(dx * dx + dy * dy) + np.float32(1e-6)
    return np.stack([dx / n, dy / n], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------- framing


def _face_focus(rng: np.random.Generator) -> tuple[float, float]:
    """A brow region or a cheek/jaw region (the nose and mouth stay out of the frame)."""
    if rng.random() < 0.5:
        return (rng.uniform(-30, 30), rng.uniform(-78, -62))
    side = 1.0 if rng.random() < 0.5 else -1.0
    return (side * rng.uniform(45, 65), rng.uniform(35, 80))


def choose_framing(rng: np.random.Generator, view: str, photo_shape: tuple[int, int], close_up: bool, margin: float) -> Framing:
    """Pick the canvas scale and the body point at its centre for one view.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    view : str
        One of :data:`VIEWS`.
    photo_shape : (H, W)
        Photo size; the canvas is ``margin`` times larger on each side.
    close_up : bool
        Frame a close-up of the skin instead of the whole region.
    margin : float
        Canvas size relative to the photo (> 1).

    Returns
    -------
    Framing
    """
    ph, pw = photo_shape
    part = ""
    lo, hi = (_CLOSE_FRAME_MM if close_up else _WHOLE_FRAME_MM)[view]
    if view == "limb":
        part = "leg" if rng.random() < 0.5 else "arm"
        if not close_up:
            lo, hi = _WHOLE_LIMB_MM[part]
    frame_mm = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    mm_per_px = frame_mm / max(pw, ph)
    if close_up:
        focus = {
            "back": (rng.uniform(-150, 150), rng.uniform(-200, 200)),
            "chest": (rng.uniform(-140, 140), rng.uniform(-180, 160)),
            "limb": (rng.uniform(-200, 200), rng.uniform(-20, 20)),
            "scalp": (rng.uniform(-45, 45), rng.uniform(-60, 60)),
            "face": _face_focus(rng),
        }[view]
    else:
        # Whole trunks are cut at the neck (clinic photos leave the face out), on small
        # people through the chin and jaw (chest) or the occiput (back).
        top = rng.uniform(-435.0, -375.0) + 0.5 * frame_mm
        focus = {
            "back": (rng.uniform(-30, 30), top),
            "chest": (rng.uniform(-30, 30), top),
            # The limb's direction is drawn later: stay near its axis so it fills the frame.
            "limb": (rng.uniform(-25, 25), rng.uniform(-15, 15)),
            "scalp": (rng.uniform(-10, 10), rng.uniform(-10, 15)),
            # The upper face: forehead, both brows and the closed lids, the nose's bridge
            # at the bottom edge (cheek and jaw shots cut the face's outline
            # unconvincingly at this scale; they stay close-ups).
            "face": (rng.uniform(-8, 8), rng.uniform(-72, -60)),
        }[view]
    world_shape = (int(round(ph * margin)), int(round(pw * margin)))
    return Framing(view, mm_per_px, (float(focus[0]), float(focus[1])), close_up, world_shape, part)


# --------------------------------------------------------------------------- bodies


def build_body(rng: np.random.Generator, framing: Framing, fitzpatrick: int) -> Body:
    """Draw the body of ``framing.view`` on the world canvas.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    framing : Framing
        View, scale and canvas size.
    fitzpatrick : int
        Skin type 1..6 (sets how pink the landmarks are).

    Returns
    -------
    Body
    """
    c = _Canvas(framing)
    male = bool(rng.random() < 0.55)
    builder = {"back": _torso, "chest": _torso, "limb": _limb, "scalp": _scalp, "face": _face}[framing.view]
    body = builder(rng, c, framing.view, male, fitzpatrick)
    # Hair grows on visible skin only (never on the wall or on clothing).
    return replace(body, hair_base=(body.hair_base * body.coverage).astype(np.float32))


def _torso_half(wa: float, ww: float, dy: float, trap: float, hip: float) -> list[tuple[float, float]]:
    """One side's outline (mm, x >= 0, before the body size) from the neck down to the hips.

    ``wa`` and ``ww`` scale the shoulder's and the waist's width, ``dy`` lowers the
    shoulder (fading in from the neck, and out down the flank), ``trap`` lifts the
    trapezius between the neck and the acromion and ``hip`` moves the waist's
    narrowest point down.
    """
    neck_top, acromion = 58.0, 194.0 * wa
    pts = [(58, -420), (64, -370), (76, -340), (98, -318), (118 * wa, -295), (160 * wa, -281), (194 * wa, -267)]
    out = []
    for x, y in pts:
        t = min(max((x - neck_top) / (acromion - neck_top), 0.0), 1.0)
        w = t * t * (3.0 - 2.0 * t)
        out.append((x, y + dy * w - trap * math.sin(math.pi * t)))
    for x, y in [(218 * wa, -248), (232 * wa, -220), (237 * wa, -190), (236 * wa, -160), (226 * wa, -134), (204 * wa, -114)]:
        out.append((x, y + dy))
    out += [(188 * ww, -50 + 0.5 * dy), (168 * ww, 100 + hip), (180 * ww, 240 + 0.5 * hip), (188 * ww, 760)]
    return out


def _torso(rng: np.random.Generator, c: _Canvas, view: str, male: bool, fitz: int) -> Body:
    shape = c.shape
    k = rng.uniform(0.85, 1.12)  # body size
    wa = rng.uniform(0.9, 1.12)  # shoulder width
    ww = rng.uniform(0.85, 1.2)  # waist width (adiposity)
    fat = float(np.clip((ww - 0.85) / 0.35 + rng.normal(0.0, 0.15), 0.0, 1.0))
    lean = 1.0 - fat
    # A patient standing for a photo is not symmetric: one shoulder lower than the other
    # (and that arm a little further out), the shoulders' widths, the trapezius' slope
    # from the neck and the waist's width and height differ from side to side.
    drop = float(np.clip(rng.normal(0.0, 10.0), -25.0, 25.0))  # mm the right shoulder is lower (+) than the left
    sides = {}
    for side in (1.0, -1.0):
        sides[side] = {
            "wa": wa * (1.0 + float(np.clip(rng.normal(0.0, 0.03), -0.07, 0.07))),
            "dy": 0.5 * side * drop + float(rng.normal(0.0, 2.0)),
            "trap": float(rng.uniform(-10.0, 10.0)),  # a fuller (+) or flatter (-) trapezius between neck and acromion
            "ww": ww * (1.0 + float(np.clip(rng.normal(0.0, 0.035), -0.08, 0.08))),
            "hip": float(rng.normal(0.0, 12.0)),  # the waist's narrowest point higher (-) or lower
        }
    # Above the neck the frame's top edge cuts the head: the jaw and chin from the
    # front, the (hairless or shaved) occiput from behind.
    head = [(66, -760), (65, -540), (61, -478), (55, -448)] if view == "chest" else [(78, -760), (80, -620), (74, -530), (60, -470)]
    halves = {side: np.array(head + _torso_half(**sp)) * k for side, sp in sides.items()}
    right = halves[1.0] + rng.normal(0, 3.0, halves[1.0].shape)
    left = halves[-1.0][::-1] * np.array([-1.0, 1.0]) + rng.normal(0, 2.5, halves[-1.0].shape)
    torso = chaikin(np.vstack([right, left]), 3)
    cov = c.fill(torso)
    # The trunk is a flattened ellipse in cross-section: it turns away over its whole
    # half-width, so the shading rolls off towards the flanks, not only at the edge.
    height = _cylinder_height(cov, c.mm(185.0 * k * ww), depth=0.62, smooth=0.25)
    # Arms hang beside the torso, a little away from it; their tops are inside the shoulders.
    arm_cov = np.zeros(shape, dtype=np.float32)
    arm_h = np.zeros(shape, dtype=np.float32)
    arm_env = np.zeros(shape, dtype=np.float32)  # the arms' plain cylinders (no muscles), for the envelope
    sun = np.zeros(shape, dtype=np.float32)
    redness = np.zeros(shape, dtype=np.float32)
    spread = rng.uniform(0.0, 0.1)
    for side in (1.0, -1.0):
        # The arm's rounded top stays inside the shoulder; its outer edge continues the deltoid's.
        sw, dy = sides[side]["wa"], sides[side]["dy"]
        p0 = (side * (237 * sw - 47) * k, (-170 + dy) * k)
        p1 = (side * ((232 * sw - 10) * k + 900 * spread + 1.5 * max(side * drop, 0.0)), (520 + dy) * k)
        arm = c.fill(_tube_poly(p0, p1, 46 * k, 34 * k, rng))
        arm_cov = np.maximum(arm_cov, arm)
        elbow = (p0[0] + 0.43 * (p1[0] - p0[0]), p0[1] + 0.43 * (p1[1] - p0[1]))
        a_rel = c.bump(elbow[0], elbow[1], 26 * k, 22 * k, out=np.zeros(shape, dtype=np.float32), amp=5.0)  # olecranon / elbow
        c.bump(p0[0] + 0.2 * (p1[0] - p0[0]), p0[1] + 0.2 * (p1[1] - p0[1]), 40 * k, 90 * k, out=a_rel, amp=6.0)  # triceps / biceps
        c.bump(p0[0] + 0.58 * (p1[0] - p0[0]), p0[1] + 0.58 * (p1[1] - p0[1]), 36 * k, 70 * k, out=a_rel, amp=4.0)  # forearm muscles
        a_h = _cylinder_height(arm, c.mm(42 * k), depth=0.9, smooth=0.25)
        arm_h = np.maximum(arm_h, a_h + a_rel * (arm >= 0.5) / np.float32(c.f.mm_per_px))
        arm_env = np.maximum(arm_env, a_h)
        redness = np.maximum(redness, 0.6 * c.bump(elbow[0], elbow[1], 30 * k, 26 * k))
        # Forearms are sun-exposed.
        sun = np.maximum(sun, arm * smoothstep((c.yy - np.float32(elbow[1] - 40 * k)) * np.float32(1.0 / (60 * k))))
    # The arm and the back meet in a crease below the armpit; above it the shoulder is
    # the trunk's (the deltoid covers the joint: no outline of the arm's root).
    merged = _smooth_max(height, arm_h, c.mm(25.0))
    root = smoothstep((c.yy - np.float32(-150 * k)) * np.float32(1.0 / (70 * k)))
    height = height + root * (merged - height)
    cov = np.maximum(cov, arm_cov)
    # The rounded envelope of the whole silhouette (trunk and arms as one outline): the
    # relief minus it is what occludes the sky (creases, grooves, the arm-trunk crease),
    # not the trunk's and the arms' roll-off towards their outline.
    env = _cylinder_height(cov, c.mm(185.0 * k * ww), depth=0.62, smooth=0.25)
    env = env + root * (np.maximum(env, arm_env) - env)

    rel = np.zeros(shape, dtype=np.float32)
    tint = np.ones(shape + (3,), dtype=np.float32)
    for side in (1.0, -1.0):
        sw, dy = sides[side]["wa"], sides[side]["dy"]
        c.bump(side * 205 * sw * k, (-222 + dy) * k, 52 * k, 75 * k, side * 0.3, out=rel, amp=5.0)  # deltoid
        c.ridge((side * 52 * k, -330 * k), (side * 165 * sw * k, (-268 + dy - 0.5 * sides[side]["trap"]) * k), 42.0 * k, out=rel, amp=7.0)  # trapezius over the shoulder
        # Ribs show on the flanks of thin people.
        for j in range(6):
            y = (-150 + 30 * j) * k
            c.ridge((side * 100 * k, y), (side * 160 * k, y + 28 * k), 12.0 * k, out=rel, amp=np.float32(1.0 * lean * lean))
        # The flank: a soft roll above the waistband on heavier people.
        c.bump(side * 168 * sides[side]["ww"] * k, (170 + sides[side]["hip"]) * k, 55 * k, 80 * k, out=rel, amp=np.float32(9.0 * fat))
    if view == "back":
        c.ridge((0, -300 * k), (0, 330 * k), 30.0 * k, out=rel, amp=-4.0)  # spine groove
        c.ridge((0, 60 * k), (0, 330 * k), 26.0 * k, out=rel, amp=-2.5)  # deeper in the lumbar region
        for j in range(17):  # spinous processes, visible on lean backs
            y = (-305 + 24 * j) * k
            c.bump(0, y, 12 * k, 10 * k, out=rel, amp=np.float32((3.0 if j == 0 else 1.0) * (0.4 + 0.6 * lean)))
        for side in (1.0, -1.0):
            sw, sdy = sides[side]["wa"], 0.7 * sides[side]["dy"]  # the scapula follows its shoulder
            c.bump(side * 44 * k, 170 * k, 48 * k, 200 * k, out=rel, amp=6.0)  # erector spinae (lumbar)
            c.bump(side * 38 * k, -100 * k, 42 * k, 170 * k, out=rel, amp=2.0)  # erector spinae (thoracic)
            c.bump(side * 125 * sw * k, (-150 + sdy) * k, 70 * k, 85 * k, side * 0.25, out=rel, amp=6.0)  # scapula and infraspinatus
            c.ridge((side * 74 * k, (-228 + sdy) * k), (side * 92 * k, (-80 + sdy) * k), 24.0 * k, out=rel, amp=np.float32(1.5 + 2.0 * lean))  # medial border
            c.bump(side * 104 * k, (-72 + sdy) * k, 32 * k, 26 * k, out=rel, amp=np.float32(1.5 + 2.0 * lean))  # inferior angle
            c.ridge((side * 80 * k, (-208 + sdy) * k), (side * 180 * sw * k, (-244 + sdy) * k), 18.0 * k, out=rel, amp=np.float32(1.0 + 1.5 * lean))  # spine of scapula
            c.bump(side * 55 * k, (-150 + sdy) * k, 18 * k, 70 * k, out=rel, amp=-2.5)  # rhomboid hollow
            c.bump(side * 150 * sw * k, (-40 + 0.5 * sdy) * k, 50 * k, 130 * k, side * 0.2, out=rel, amp=8.0)  # latissimus
            c.bump(side * 42 * k, 300 * k, 10 * k, 10 * k, out=rel, amp=-2.5)  # dimples of Venus
        # The neck and upper back get sun above a collar line.
        collar = smoothstep((np.float32(-300 * k) + np.float32(0.35) * np.abs(c.xx) - c.yy) * np.float32(1.0 / (30 * k)))
        sun = np.maximum(sun, collar)
    else:
        c.ridge((0, -240 * k), (0, 30 * k), 30.0 * k, out=rel, amp=-1.5)  # sternum
        c.bump(0, -270 * k, 24 * k, 18 * k, out=rel, amp=-4.0)  # suprasternal notch
        c.ridge((0, 40 * k), (0, 170 * k), 16.0 * k, out=rel, amp=-1.2)  # linea alba
        breast = (not male) and rng.random() < 0.8
        for side in (1.0, -1.0):
            c.ridge((side * 48 * k, -390 * k), (side * 20 * k, -285 * k), 18.0 * k, out=rel, amp=4.0)  # sternocleidomastoid
            c.bump(side * 90 * k, (-296 + 0.5 * sides[side]["dy"]) * k, 55 * k, 24 * k, out=rel, amp=-3.0)  # supraclavicular hollow
            c.ridge((side * 150 * k, 40 * k), (side * 30 * k, -50 * k), 22.0 * k, out=rel, amp=np.float32(1.0 + 1.5 * lean))  # costal margin
            if lean > 0.4:
                for j in range(3):  # rectus abdominis segments
                    c.bump(side * 36 * k, (10 + 55 * j) * k, 28 * k, 24 * k, out=rel, amp=np.float32(3.0 * (lean - 0.4)))
            if breast:
                bx, by = side * 92 * k, -40 * k
                # Fuller below than above, ending in the inframammary fold.
                c.bump(bx, by - 12 * k, 92 * k, 92 * k, out=rel, amp=20.0)
                c.bump(bx, by + 22 * k, 78 * k, 62 * k, out=rel, amp=22.0)
                nip = (bx + side * 6, by + 18 * k)
            else:
                c.bump(side * 85 * k, -145 * k, 100 * k, 72 * k, side * 0.12, out=rel, amp=14.0)  # pectoral
                c.bump(side * 100 * k, -105 * k, 80 * k, 30 * k, out=rel, amp=4.0)  # its lower border
                nip = (side * 98 * k, -78 * k)
            c.ridge((side * 28 * k, -268 * k), (side * 160 * sides[side]["wa"] * k, (-278 + sides[side]["dy"]) * k), 15.0 * k, out=rel, amp=2.5)  # clavicle
            # Areola and nipple: brown or pink, a landmark that is not a lesion.
            ar = rng.uniform(11, 22) * (1.25 if breast else 1.0)
            areola = c.bump(nip[0], nip[1], ar, ar * rng.uniform(0.85, 1.0))
            areola = smoothstep(areola * 3.0)
            dark = rng.uniform(0.55, 0.8) if fitz >= 3 else rng.uniform(0.75, 0.9)
            col = np.array([dark * 1.0, dark * 0.78, dark * 0.75], dtype=np.float32)
            tint *= 1.0 + areola[..., None] * (col - 1.0)
            c.bump(nip[0], nip[1], ar * 0.3, ar * 0.3, out=rel, amp=3.0)
        c.bump(0, 150 * k, 170 * k, 150 * k, out=rel, amp=np.float32(28.0 * fat))  # belly
        navel = c.bump(0, 185 * k, 7, 9)
        tint *= 1.0 - 0.35 * smoothstep(navel * 4.0)[..., None]
        rel -= 6.0 * navel
        # A V of sun on the upper chest and the neck.
        vee = smoothstep((np.float32(-215 * k) - np.float32(0.9) * np.abs(c.xx) - c.yy) * np.float32(1.0 / (25 * k)))
        sun = np.maximum(sun, vee)
    # The head above the neck stands out from it and shades it.
    head_top, head_shadow = _head_above_neck(c, view, k)
    rel += head_top
    tint *= head_shadow[..., None]
    # The trunk's relief fades out over the arms (softly: a cut would draw the arm's
    # outline) except at the shoulder, where the deltoid and trapezius run onto the arm.
    over_arm = smoothstep(blur(arm_cov, c.mm(20.0)) * np.float32(2.0)) * root
    height = height + rel * (np.float32(1.0) - over_arm) * np.float32(1.0 / c.f.mm_per_px)
    # Flushed over the shoulders (and the elbows, above).
    for side in (1.0, -1.0):
        redness = np.maximum(redness, 0.45 * c.bump(side * 195 * sides[side]["wa"] * k, (-255 + sides[side]["dy"]) * k, 70 * k, 50 * k))

    # Clothing occluders in front of the body are handled by the background; here the
    # waistband and bra strap just remove skin.
    cov_all = cov
    cov, clothing = _occlude_clothing(rng, c, cov, waist_y=rng.uniform(250, 360) * k, strap=(view == "back" and not male and rng.random() < 0.5), k=k, arms=arm_cov)
    # A gentle muscle bump hides little sky from the skin at its foot: raised relief
    # counts a third, so bumps do not draw dark rings round themselves; hollows count fully.
    detail = height - env
    detail = np.minimum(detail, 0.0) + np.float32(0.35) * np.maximum(detail, 0.0)
    ao = _occlusion(detail, cov_all, (c.mm(12.0), c.mm(45.0)), 0.55)
    # Skin just above clothing lies in its shadow.
    ao *= 1.0 - np.float32(0.3) * blur(clothing, c.mm(6.0))
    tint = _skin_tint(tint, ao, sun, fitz, rng.uniform(0.3, 1.0))

    # Hair: terminal body hair (chest, shoulders, back) on some men; otherwise none.
    hair_base = np.zeros(shape, dtype=np.float32)
    if male and rng.random() < 0.85:
        if view == "chest":
            zone = np.maximum(c.bump(0, -90 * k, 140 * k, 110 * k), c.bump(0, 80 * k, 40 * k, 200 * k))
        else:
            zone = np.maximum(c.bump(0, -210 * k, 230 * k, 110 * k), c.bump(0, 230 * k, 120 * k, 150 * k))
            if rng.random() < 0.5:
                zone = np.maximum(zone, c.bump(0, 0, 260 * k, 420 * k))
        patchy = fractal(rng, shape, c.mm(60.0), octaves=2)
        hair_base = smoothstep((zone - 0.15 + 0.15 * patchy) * 6.0) * (arm_cov < 0.5)
    # Body hair lies downward and outward from the midline.
    fx = np.sign(c.xx) * np.float32(0.35) + np.float32(0.2) * noise(rng, shape, c.mm(80))
    fy = np.ones(shape, dtype=np.float32) + np.float32(0.3) * noise(rng, shape, c.mm(80))
    if view == "chest":
        fy = fy * np.where(c.yy < -60 * k, -0.4, 1.0).astype(np.float32)
    flow = _flow_from_angle_field(fx, fy)
    lesion_ok = cov >= 0.5
    return Body(cov, clothing, height.astype(np.float32), tint, hair_base, flow, redness.astype(np.float32), lesion_ok, "body", male)


def _head_above_neck(c: _Canvas, view: str, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Relief (mm) of the head where a trunk photo's top edge cuts it, and its shadow on the neck.

    From the front the chin and jaw jut out over the neck (the jaw line is highest at
    its angles) and shade the throat; from behind the occiput bulges over a nape crease.
    Returns the relief and a multiplicative shadow (1 where there is none).
    """
    x = c.xx * np.float32(1.0 / k)
    y = c.yy * np.float32(1.0 / k)
    if view == "chest":
        # Lower border of the mandible: the chin lowest at the midline, the angles higher.
        edge_y = np.float32(-440.0) - np.float32(36.0 / 3600.0) * np.minimum(x * x, np.float32(4900.0))
        above = smoothstep((edge_y - y) * np.float32(1.0 / 9.0) + np.float32(0.5))
        rel = above * np.float32(26.0)
        c.bump(0, -470 * k, 32 * k, 30 * k, out=rel, amp=6.0)  # the chin's point
        below = y - edge_y
        shadow = 1.0 - np.float32(0.5) * smoothstep(below * np.float32(1.0 / 6.0) + np.float32(0.5)) * smoothstep((np.float32(38.0) - below) * np.float32(1.0 / 22.0))
    else:
        edge_y = np.float32(-462.0) + np.float32(14.0 / 3600.0) * np.minimum(x * x, np.float32(4900.0))
        above = smoothstep((edge_y - y) * np.float32(1.0 / 30.0) + np.float32(0.5))
        rel = above * np.float32(30.0)
        c.ridge((-28 * k, -458 * k), (28 * k, -458 * k), 14.0 * k, out=rel, amp=-1.2)  # nape crease, soft and short
        below = y - edge_y
        shadow = 1.0 - np.float32(0.3) * smoothstep(below * np.float32(1.0 / 8.0) + np.float32(0.5)) * smoothstep((np.float32(25.0) - below) * np.float32(1.0 / 18.0))
    return rel.astype(np.float32), shadow.astype(np.float32)


def _occlude_clothing(rng: np.random.Generator, c: _Canvas, cov: np.ndarray, *, waist_y: float, strap: bool, k: float, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove skin under a waistband (trousers) and, optionally, a bra strap (on the trunk, not over the arms ``arms``).

    Their edges are crisp (fabric) but not ruler-straight: the waistband waves where
    the fabric gathers and the strap follows the back's curvature.
    """
    sag = rng.uniform(-25, 25)
    wave = np.float32(rng.uniform(2.0, 6.0)) * noise(rng, c.shape, c.mm(45.0))
    wave += np.float32(rng.uniform(0.3, 0.8)) * noise(rng, c.shape, c.mm(15.0))
    y = c.yy - np.float32(waist_y) - np.float32(sag) * (c.xx * np.float32(1.0 / (200 * k))) ** 2 + wave
    pants = smoothstep(y / np.float32(c.f.mm_per_px * 1.5) + 0.5)
    # Trousers are a little wider than the body under them.
    body = np.maximum(cov, blur(cov, c.mm(12.0)) * np.float32(1.6)).clip(0.0, 1.0)
    clothing = pants * body
    if strap:
        sy = rng.uniform(-60, 10) * k
        tilt = rng.uniform(-8, 8) / 800.0
        half = rng.uniform(7, 12)
        bow = np.float32(rng.uniform(0.0, 20.0)) * (c.xx * np.float32(1.0 / (200 * k))) ** 2
        off = np.abs(c.yy - np.float32(sy) - np.float32(tilt) * c.xx - bow - np.float32(1.5) * noise(rng, c.shape, c.mm(50.0)))
        band = smoothstep((np.float32(half) - off) / np.float32(c.f.mm_per_px * 1.5) + 0.5)
        clothing = np.maximum(clothing, band * cov * (np.float32(1.0) - arms))
    return cov * (1.0 - clothing), clothing


def _limb(rng: np.random.Generator, c: _Canvas, view: str, male: bool, fitz: int) -> Body:
    shape = c.shape
    is_leg = c.f.part == "leg" if c.f.part else bool(rng.random() < 0.5)
    w0 = rng.uniform(55, 72) if is_leg else rng.uniform(38, 50)
    # Legs taper towards the ankle (out of frame); forearms to a wrist well under the upper arm's width.
    w1 = w0 * (rng.uniform(0.62, 0.8) if is_leg else rng.uniform(0.56, 0.64))
    ang = rng.uniform(-0.6, 0.6) + (math.pi / 2 if rng.random() < 0.3 else 0.0)
    ca, sa = math.cos(ang), math.sin(ang)
    front = bool(rng.random() < 0.5)  # the extensor side (kneecap, back of the elbow) or the flexor side
    # Upper and lower segments meet at a slightly bent joint (knee/elbow) near the middle;
    # a whole-arm shot is centred on the forearm, so the wrist and hand are often in it.
    jt = rng.uniform(-150, 150) if (is_leg or c.f.close_up) else rng.uniform(-170, -20)
    forearm = 750.0 if is_leg else rng.uniform(235.0, 275.0) * w0 / 44.0
    shin = rng.uniform(380.0, 450.0) * w0 / 64.0  # knee to ankle
    if is_leg and not c.f.close_up and rng.random() < 0.35:
        # A photo of the lower legs: the knees near one edge, the ankles and feet in the frame.
        jt = -shin * rng.uniform(0.6, 0.85)
    wj = 0.5 * (w0 + w1) * rng.uniform(0.85, 1.0)
    # Clinic leg photos usually show both legs: a whole-leg view gets the other one beside it.
    offsets = [0.0]
    if is_leg and not c.f.close_up:
        offsets.append(float(rng.choice([-1.0, 1.0])) * w0 * rng.uniform(2.05, 2.4))
    cov = np.zeros(shape, dtype=np.float32)
    height = np.zeros(shape, dtype=np.float32)
    rel = np.zeros(shape, dtype=np.float32)
    redness = np.zeros(shape, dtype=np.float32)
    sole = np.zeros(shape, dtype=np.float32)  # the soles of a prone leg's feet
    for off in offsets:
        ox, oy = -sa * off, ca * off
        jo = jt + (rng.uniform(-25, 25) if off else 0.0)
        jx, jy = ox + jo * ca, oy + jo * sa
        bend = rng.uniform(-0.35, 0.35) if not off else rng.uniform(-0.12, 0.12)
        if is_leg and len(offsets) > 1:
            # Two legs side by side stand straight or a little apart at the feet, never crossing.
            away = -math.copysign(1.0, offsets[1]) if off == 0.0 else math.copysign(1.0, offsets[1])
            bend = away * abs(bend) * 0.4
        cb, sb = math.cos(ang + bend), math.sin(ang + bend)
        if is_leg:
            # A leg's own profile: thigh, knee, calf (the medial head fuller and lower),
            # the narrow ankle with its malleoli and the foot (or, from behind, the heel).
            # The medial side faces the other leg.
            if len(offsets) > 1:
                medial = math.copysign(1.0, offsets[1]) * (1.0 if off == 0.0 else -1.0)
            else:
                medial = float(rng.choice([-1.0, 1.0]))
            seg = c.fill(_leg_poly((jx, jy), ang, bend, w0, wj, shin, medial, front, rng))
        else:
            upper = c.fill(_tube_poly((jx - 750 * ca, jy - 750 * sa), (jx + 0.6 * wj * ca, jy + 0.6 * wj * sa), w0, wj, rng, n=10))
            lower = c.fill(_tube_poly((jx - 0.6 * wj * cb, jy - 0.6 * wj * sb), (jx + forearm * cb, jy + forearm * sb), wj, w1, rng, n=10))
            for part in _hand_poly((jx + forearm * cb, jy + forearm * sb), ang + bend, w1, rng):
                lower = np.maximum(lower, c.fill(part))
            # One outline for the whole limb (no notch at the joint), rounded as one piece.
            seg = blur(np.maximum(upper, lower), c.mm(0.5 * wj))
            seg = smoothstep((seg - np.float32(0.5)) * np.float32(4.0) + np.float32(0.5))
        seg_h = _cylinder_height(seg, c.mm(wj * 0.95), depth=0.75, smooth=0.25)
        cov = np.maximum(cov, seg)
        height = np.maximum(height, seg_h)
        # Landmarks of the joint and the muscle bellies around it (mm of relief).
        up = (-ca, -sa)  # towards the root of the limb
        dn = (cb, sb)
        if is_leg and front:
            c.bump(jx, jy, wj * 0.42, wj * 0.38, ang, out=rel, amp=8.0)  # kneecap
            c.bump(jx + dn[0] * wj * 0.75, jy + dn[1] * wj * 0.75, wj * 0.2, wj * 0.18, out=rel, amp=3.0)  # tibial tuberosity
            side = 1.0 if rng.random() < 0.5 else -1.0
            c.bump(jx + up[0] * wj * 0.9 - sa * side * wj * 0.4, jy + up[1] * wj * 0.9 + ca * side * wj * 0.4, wj * 0.45, wj * 0.6, ang, out=rel, amp=6.0)  # vastus medialis
            c.ridge((jx + dn[0] * wj, jy + dn[1] * wj), (jx + dn[0] * 0.85 * shin, jy + dn[1] * 0.85 * shin), wj * 0.4, out=rel, amp=1.8)  # shin (tibial crest), a soft edge
            redness = np.maximum(redness, 0.7 * c.bump(jx, jy, wj * 0.6, wj * 0.55, ang))
        elif is_leg:
            c.ridge((jx - sa * wj * 0.5, jy + ca * wj * 0.5), (jx + sa * wj * 0.5, jy - ca * wj * 0.5), 16.0, out=rel, amp=-1.5)  # popliteal crease
            for s in (0.22, -0.22):  # the two heads of the calf muscle, one broad bulge
                cx = jx + dn[0] * wj * 1.9 - sb * s * wj
                cy = jy + dn[1] * wj * 1.9 + cb * s * wj
                c.bump(cx, cy, wj * 0.7, wj * 1.5, ang + bend + math.pi / 2, out=rel, amp=5.0)
            c.bump(jx + up[0] * wj * 1.6, jy + up[1] * wj * 1.6, wj * 0.8, wj * 1.6, ang + math.pi / 2, out=rel, amp=6.0)  # hamstrings
        elif front:
            c.bump(jx, jy, wj * 0.35, wj * 0.3, ang, out=rel, amp=6.0)  # olecranon
            c.bump(jx + up[0] * wj * 1.8, jy + up[1] * wj * 1.8, wj * 0.7, wj * 1.6, ang + math.pi / 2, out=rel, amp=8.0)  # triceps
            redness = np.maximum(redness, 0.7 * c.bump(jx, jy, wj * 0.5, wj * 0.45, ang))
        else:
            c.ridge((jx - sa * wj * 0.5, jy + ca * wj * 0.5), (jx + sa * wj * 0.5, jy - ca * wj * 0.5), 14.0, out=rel, amp=-1.5)  # elbow crease
            c.bump(jx + up[0] * wj * 1.8, jy + up[1] * wj * 1.8, wj * 0.6, wj * 1.7, ang + math.pi / 2, out=rel, amp=8.0)  # biceps
            c.bump(jx + dn[0] * wj * 1.4, jy + dn[1] * wj * 1.4, wj * 0.75, wj * 1.5, ang + bend + math.pi / 2, out=rel, amp=7.0)  # forearm flexors
        if not is_leg:
            _hand_relief(c, (jx + forearm * cb, jy + forearm * sb), ang + bend, w1, rel)
        else:
            _foot_relief(c, (jx + shin * cb, jy + shin * sb), ang + bend, wj, medial, front, rel)
            if not front:  # the sole begins below the heel's back
                beyond = (c.xx - np.float32(jx + shin * cb)) * np.float32(cb) + (c.yy - np.float32(jy + shin * sb)) * np.float32(sb)
                sole = np.maximum(sole, smoothstep((beyond - np.float32(25.0)) * np.float32(1.0 / 30.0)) * seg)
    redness *= np.float32(rng.uniform(0.2, 1.0))
    # The rounded envelope of the outline (both legs as one where they touch): the
    # relief minus it occludes (joint creases, between touching legs, between the
    # fingers), the roll-off towards the outline does not (no dark rim).
    env = _cylinder_height(cov, c.mm(wj * 0.95), depth=0.75, smooth=0.25) if len(offsets) > 1 else height
    height = height + rel * (cov >= 0.5) / np.float32(c.f.mm_per_px)
    # Arms and shins see the sun; thighs are usually covered.
    along = c.xx * np.float32(ca) + c.yy * np.float32(sa)
    sun = cov if not is_leg else cov * smoothstep((along - np.float32(jt - 60.0)) * np.float32(1.0 / 120.0))
    cov_all = cov
    cov, clothing = _sleeve(rng, c, cov, ang, w0)
    ao = _occlusion(height - env, cov_all, (c.mm(10.0), c.mm(0.8 * w0)), 0.5)
    ao *= 1.0 - np.float32(0.3) * blur(clothing, c.mm(6.0))
    landmarks = None
    if sole.any():
        # Plantar skin has little melanin and no tan: much paler than the leg on dark
        # skin, a little pinker on fair skin.
        sun = sun * (np.float32(1.0) - sole)
        pale = np.array(_SOLE[int(fitz)], dtype=np.float32)
        landmarks = np.float32(1.0) + sole[..., None] * (pale - np.float32(1.0))
    tint = _skin_tint(landmarks, ao, sun, fitz, rng.uniform(0.2, 0.9))
    hair_base = np.zeros(shape, dtype=np.float32)
    if rng.random() < (0.85 if male else 0.35):
        patchy = fractal(rng, shape, c.mm(50.0), octaves=2)
        hair_base = smoothstep((0.75 + 0.25 * patchy) * 3.0 - 1.0) * (cov >= 0.5) * (np.float32(1.0) - sole)
    # Limb hair lies along the limb, toward its distal end, with some swirl.
    fx = np.full(shape, ca, dtype=np.float32) + np.float32(0.25) * noise(rng, shape, c.mm(60))
    fy = np.full(shape, sa, dtype=np.float32) + np.float32(0.25) * noise(rng, shape, c.mm(60))
    flow = _flow_from_angle_field(fx, fy)
    return Body(cov, clothing, height.astype(np.float32), tint, hair_base, flow, redness.astype(np.float32), cov >= 0.5, "body", male)


def _leg_poly(knee: tuple[float, float], ang: float, bend: float, w0: float, wj: float, shin: float, medial: float, front: bool, rng: np.random.Generator) -> np.ndarray:
    """Outline (mm) of a leg from the thigh (out of frame) past the knee to the ankle and foot.

    ``ang`` is the thigh's direction (towards the foot) and ``ang + bend`` the shin's;
    ``w0`` is the thigh's and ``wj`` the knee's half-width, ``shin`` the knee-to-ankle
    length, ``medial`` (+1 or -1) the side of the outline's normal that is the inner
    side. Seen from the front (``front``) the foot's dorsum is foreshortened into a
    short, wide shape; from behind, the patient lying prone, the sole is seen from the
    heel past the narrow arch to the ball; both end in the toes (the big toe medial).
    """
    q = wj / w0
    L = shin
    # (distance from the knee along the leg, lateral and medial half-widths / w0)
    ctrl = [
        (-780.0, 1.0, 1.0),
        (-450.0, 0.95, 0.97),
        (-230.0, 0.86, 0.92),
        (-100.0, 0.5 * (0.86 + q), q + 0.1),  # vastus medialis bulges inside above the knee
        (0.0, q, q),
        (0.11 * L, q * 0.94, q * 0.95),
        (0.26 * L, q * 1.06, q * 1.02),  # the lateral calf head, higher
        (0.38 * L, q * 1.0, q * 1.12),  # the medial one, fuller and lower
        (0.62 * L, 0.76 * q, 0.8 * q),
        (0.88 * L, 0.6 * q, 0.62 * q),  # the narrowest, above the malleoli
        (0.97 * L, 0.66 * q, 0.71 * q),  # the medial malleolus is higher,
        (1.03 * L, 0.69 * q, 0.65 * q),  # the lateral one lower
    ]
    if front:  # the foot's dorsum, foreshortened, widening to the toes
        ctrl += [(L + 40.0, 0.74 * q, 0.78 * q), (L + 90.0, 0.92 * q, 1.0 * q), (L + 115.0, 0.9 * q, 1.0 * q)]
    else:  # lying prone: the sole, from the heel past the narrow arch to the ball and the toes
        ctrl += [(L + 40.0, 0.64 * q, 0.64 * q), (L + 95.0, 0.64 * q, 0.56 * q), (L + 150.0, 0.84 * q, 0.9 * q), (L + 175.0, 0.86 * q, 0.94 * q)]
    ctrl_a = np.array(ctrl)
    ctrl_a[:, 1:] *= 1.0 + 0.025 * rng.standard_normal((len(ctrl), 2))
    u = np.concatenate([np.linspace(-780.0, -200.0, 8, endpoint=False), np.arange(-200.0, ctrl_a[-1, 0] + 1e-6, 8.0)])
    # Widths between the control points, rounded over about 40 mm (no corners in the outline).
    kern = np.hanning(9)[1:-1]
    kern /= kern.sum()

    def width(col: int) -> np.ndarray:
        wv = np.interp(u, ctrl_a[:, 0], ctrl_a[:, col])
        pad = np.concatenate([np.full(3, wv[0]), wv, np.full(3, wv[-1])])
        return np.convolve(pad, kern, mode="valid") * w0

    lat, med = width(1), width(2)
    # The axis turns from the thigh's to the shin's direction across the knee.
    a = ang + bend * np.clip((u + 60.0) / 120.0, 0.0, 1.0) ** 2 * (3.0 - 2.0 * np.clip((u + 60.0) / 120.0, 0.0, 1.0))
    kx, ky = knee
    cx = np.where(u < 0, kx + u * math.cos(ang), kx + u * math.cos(ang + bend))
    cy = np.where(u < 0, ky + u * math.sin(ang), ky + u * math.sin(ang + bend))
    nx, ny = -np.sin(a), np.cos(a)
    wp = np.where(medial > 0, med, lat)  # the +normal side
    wm = np.where(medial > 0, lat, med)
    plus = np.stack([cx + nx * wp, cy + ny * wp], axis=1)
    minus = np.stack([cx - nx * wm, cy - ny * wm], axis=1)
    # The end: the toes, the big toe on the medial side.
    ea = ang + bend
    ex, ey = cx[-1], cy[-1]
    local: list[tuple[float, float]] = []  # (along beyond the last station, across towards +normal)
    frac = np.array([0.3, 0.19, 0.18, 0.17, 0.16]) * (1.0 + 0.05 * rng.standard_normal(5))
    length = np.array([38.0, 36.0, 30.0, 24.0, 17.0]) * (w0 / 64.0) * (1.0 + 0.08 * rng.standard_normal(5))
    if medial < 0:  # the big toe on the -normal side: order the toes from +normal
        frac, length = frac[::-1], length[::-1]
    edges = wp[-1] - np.concatenate([[0.0], np.cumsum(frac / frac.sum())]) * (wp[-1] + wm[-1])
    for j in range(5):
        a0, a1 = edges[j], edges[j + 1]
        hw, mid = 0.5 * (a0 - a1), 0.5 * (a0 + a1)
        if j:
            local.append((0.84 * min(length[j - 1], length[j]), a0))  # a shallow cleft between two toes
        for i in range(7):
            phi = math.pi * i / 6
            local.append((length[j] - 0.6 * hw + 0.6 * hw * math.sin(phi), mid + 0.95 * hw * math.cos(phi)))
    cap = [(ex + math.cos(ea) * al - math.sin(ea) * ac, ey + math.sin(ea) * al + math.cos(ea) * ac) for al, ac in local]
    pts = np.vstack([plus, np.array(cap), minus[::-1]])
    return chaikin(pts, 2)


def _foot_relief(c: _Canvas, ankle: tuple[float, float], ang: float, wj: float, medial: float, front: bool, rel: np.ndarray) -> None:
    """Malleoli, and the dorsum's tendons (front) or the Achilles tendon, heel, arch and ball of the sole (back), in mm into ``rel``.

    ``ang`` is the shin's direction (towards the foot), ``wj`` the knee's half-width and
    ``medial`` the side (+1: +normal) of the inner ankle.
    """
    ca, sa = math.cos(ang), math.sin(ang)

    def at(u: float, v: float) -> tuple[float, float]:
        return (ankle[0] + ca * u - sa * v, ankle[1] + sa * u + ca * v)

    c.bump(*at(-12.0, medial * 0.55 * wj), 14.0, 17.0, ang, out=rel, amp=5.0)  # medial malleolus, higher
    c.bump(*at(10.0, -medial * 0.55 * wj), 13.0, 16.0, ang, out=rel, amp=4.0)  # lateral malleolus, lower
    if front:
        c.ridge(at(-90.0, medial * 0.2 * wj), at(25.0, medial * 0.3 * wj), 8.0, out=rel, amp=1.5)  # tibialis anterior tendon
        c.ridge(at(12.0, -0.5 * wj), at(12.0, 0.5 * wj), 10.0, out=rel, amp=-1.5)  # the crease in front of the ankle
        for v in (-0.45, -0.15, 0.15, 0.45):
            c.ridge(at(35.0, v * 0.5 * wj), at(95.0, v * 1.1 * wj), 7.0, out=rel, amp=0.5)  # extensor tendons to the toes
    else:
        c.ridge(at(-160.0, 0.0), at(5.0, 0.0), 14.0, out=rel, amp=2.5)  # Achilles tendon
        for v in (-0.38, 0.38):
            c.ridge(at(-110.0, v * wj), at(-10.0, v * wj), 14.0, out=rel, amp=-1.5)  # the hollows beside it
        c.bump(*at(45.0, 0.0), 30.0, 28.0, ang, out=rel, amp=6.0)  # heel pad
        c.bump(*at(100.0, medial * 0.3 * wj), 30.0, 18.0, ang, out=rel, amp=-3.0)  # the arch
        c.bump(*at(155.0, 0.1 * medial * wj), 28.0, 0.8 * wj, ang, out=rel, amp=4.0)  # the ball of the foot


def _hand_poly(wrist: tuple[float, float], ang: float, ww: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A relaxed hand lying flat beyond the wrist, fingers together, thumb alongside (mm).

    ``ww`` is the wrist's half-width; the hand widens to about 1.45 ``ww`` at the
    knuckles, the fingers end in a rounded arc (middle finger longest) and the thumb
    lies against the radial side. Returns the outlines of the hand and of the thumb.
    """
    s = ww / 28.0
    side = 1.0 if rng.random() < 0.5 else -1.0  # which side the thumb is on
    j = rng.normal(0.0, 0.025, 12)
    # (u along the forearm from the wrist, v across, in units of the wrist half-width)
    outline = [
        (0.0, 1.0), (25.0, 1.18 + j[0]), (60.0, 1.38 + j[1]), (95.0, 1.45 + j[2]), (130.0, 1.38 + j[3]),
        (160.0, 1.12 + j[4]), (176.0, 0.62 + j[5]), (183.0, 0.05 + j[6]), (178.0, -0.52 + j[7]),
        (158.0, -1.0 + j[8]), (130.0, -1.3 + j[9]), (95.0, -1.42 + j[10]), (60.0, -1.36 + j[11]), (25.0, -1.16), (0.0, -1.0), (-20.0, -1.0), (-20.0, 1.0),
    ]
    ca, sa = math.cos(ang), math.sin(ang)
    pts = []
    for u, v in outline:
        u, v = u * s, v * ww * side
        pts.append((wrist[0] + ca * u - sa * v, wrist[1] + sa * u + ca * v))
    hand = chaikin(np.array(pts), 3)
    # The thumb: a short tapering digit from the base of the palm, lying close to the index.
    t_ang = ang + side * rng.uniform(0.25, 0.5)
    tu, tv = 22.0 * s, 1.05 * ww * side
    t0 = (wrist[0] + ca * tu - sa * tv, wrist[1] + sa * tu + ca * tv)
    length = rng.uniform(85.0, 100.0) * s
    t1 = (t0[0] + math.cos(t_ang) * length, t0[1] + math.sin(t_ang) * length)
    thumb = []
    for a in range(9):  # a rounded tip
        phi = -math.pi / 2 + math.pi * a / 8
        r = 9.5 * s
        thumb.append((t1[0] + r * math.cos(t_ang + phi), t1[1] + r * math.sin(t_ang + phi)))
    nx, ny = -math.sin(t_ang), math.cos(t_ang)
    w0 = 15.0 * s
    thumb = [(t0[0] - nx * w0, t0[1] - ny * w0)] + thumb + [(t0[0] + nx * w0, t0[1] + ny * w0)]
    thumb_poly = chaikin(np.array(thumb), 2)
    return hand, thumb_poly


def _hand_relief(c: _Canvas, wrist: tuple[float, float], ang: float, ww: float, rel: np.ndarray) -> None:
    """Knuckles, the grooves between the fingers and the tendons' ridge on the back of the hand (mm, into ``rel``)."""
    s = ww / 28.0
    ca, sa = math.cos(ang), math.sin(ang)

    def at(u: float, v: float) -> tuple[float, float]:
        u, v = u * s, v * ww
        return (wrist[0] + ca * u - sa * v, wrist[1] + sa * u + ca * v)

    c.bump(*at(-60.0, 0.0), 40 * s, 30 * s, ang, out=rel, amp=-3.0)  # the forearm flattens towards the wrist
    for v in (-0.72, 0.0, 0.72):
        c.ridge(at(112.0, v), at(176.0, v * 0.8), 5.0 * s, out=rel, amp=-3.0)  # between the fingers
    for v in (-1.05, -0.36, 0.36, 1.05):
        c.bump(*at(98.0, v), 10 * s, 9 * s, out=rel, amp=2.5)  # knuckles
        c.ridge(at(25.0, v * 0.5), at(90.0, v), 5.0 * s, out=rel, amp=1.0)  # extensor tendons


def _sleeve(rng: np.random.Generator, c: _Canvas, cov: np.ndarray, ang: float, w0: float) -> tuple[np.ndarray, np.ndarray]:
    """Cover one end of a limb with a sleeve or shorts (sometimes)."""
    if rng.random() > 0.45:
        return cov, np.zeros_like(cov)
    ca, sa = math.cos(ang), math.sin(ang)
    t0 = rng.uniform(-420, -180)
    along = c.xx * np.float32(ca) + c.yy * np.float32(sa) - np.float32(t0)
    across = -c.xx * np.float32(sa) + c.yy * np.float32(ca)
    edge = along + np.float32(0.25) * across + np.float32(6.0) * noise(rng, c.shape, c.mm(30))
    sleeve = smoothstep(-edge / np.float32(c.f.mm_per_px * 1.5) + 0.5)
    body = np.maximum(cov, blur(cov, c.mm(10.0)) * np.float32(1.6)).clip(0.0, 1.0)
    clothing = sleeve * body
    return cov * (1.0 - clothing), clothing


def _head_outline(a: float, b: float, back: float, flat: float, rot: float, rng: np.random.Generator, n: int = 40) -> np.ndarray:
    """Outline (mm) of a head seen from above: narrower forehead, wider and flatter back."""
    pts = []
    wob = 0.01 * rng.standard_normal(n)
    for i in range(n):
        t = 2.0 * math.pi * i / n
        su, sv = math.sin(t), -math.cos(t)  # sv: -1 front (forehead), +1 back (occiput)
        # The level set 1 of _skull_r2: between an ellipse and a squarer superellipse.
        rho = math.sqrt(2.0 / (1.0 + math.sqrt(su**4 + sv**4)))
        u, v = rho * su, rho * sv
        x = a * u * (1.0 + back * v) * (1.0 + wob[i])
        y = b * v * (1.0 - flat * max(v, 0.0) ** 2) * (1.0 + wob[i])
        pts.append((math.cos(rot) * x - math.sin(rot) * y, math.sin(rot) * x + math.cos(rot) * y))
    return chaikin(np.array(pts), 3)


def _rotated(pts: list[tuple[float, float]], rot: float) -> np.ndarray:
    ca, sa = math.cos(rot), math.sin(rot)
    return np.array([(ca * x - sa * y, sa * x + ca * y) for x, y in pts])


def _scalp(rng: np.random.Generator, c: _Canvas, view: str, male: bool, fitz: int) -> Body:
    """The head seen from above: an asymmetric skull (narrow forehead, broad occiput), ears,
    the neck behind and the shoulders in clothing; hair with a frontal hairline and a
    crown whorl behind the vertex."""
    shape = c.shape
    a = rng.uniform(70, 80)  # half-width (mm) at the middle
    b = rng.uniform(92, 102)  # half-length; front of the head is up (negative y)
    rot = rng.uniform(-0.25, 0.25)
    back = rng.uniform(0.04, 0.1)  # how much wider the back of the head is than the front
    flat = rng.uniform(0.0, 0.12)  # flattened occiput
    head = c.fill(_head_outline(a, b, back, flat, rot, rng))
    # Ears at the sides, a little behind the middle.
    ears = np.zeros(shape, dtype=np.float32)
    for side in (1.0, -1.0):
        ex = side * (a + 1.5) * math.cos(rot) - 5 * math.sin(rot)
        ey = side * (a + 1.5) * math.sin(rot) + 5 * math.cos(rot)
        ears = np.maximum(ears, c.fill(_ellipse_poly(ex, ey, 6, 26, rot, rng, 0.05, n=18)))
    # The back of the neck, seen behind the head when the patient bends forward.
    neck_end = b + rng.uniform(30, 70)
    neck = c.fill(_rotated([(x, y) for x, y in _tube_poly((0, neck_end), (0, b * 0.4), 50, 45, rng)], rot))
    ca, sa = math.cos(rot), math.sin(rot)
    u = c.xx * np.float32(ca) + c.yy * np.float32(sa)
    v = (-c.xx * np.float32(sa) + c.yy * np.float32(ca)) * np.float32(1.0 / b)
    # Skull relief: a dome whose top (the vertex) is behind the middle, over the egg outline.
    vc = np.clip(v, -1.0, 1.0)
    vn = v / (1.0 - np.float32(flat) * np.maximum(vc, 0.0) * vc)
    uu = u / (np.float32(a) * (1.0 + np.float32(back) * np.clip(vn, -1.0, 1.0)))
    u2, v2 = uu * uu, vn * vn
    r2 = np.minimum(np.float32(0.5) * (u2 + v2) + np.float32(0.5) * np.sqrt(u2 * u2 + v2 * v2), 1.0)
    tilt = 1.0 + np.float32(rng.uniform(0.08, 0.2)) * np.clip(vn, -1.0, 1.0)
    dome = np.float32(c.mm(a)) * np.sqrt(1.0 - r2) * tilt * (head >= 0.02)
    # A skull is no egg: parietal eminences, temporal hollows in front of the ears, a
    # faint sagittal ridge, the occipital bulge and small irregularities (mm).
    rel = np.zeros(shape, dtype=np.float32)
    for side in (1.0, -1.0):
        c.bump(*_rotated([(side * 0.55 * a, 0.12 * b)], rot)[0], 0.4 * a, 0.45 * b, rot, out=rel, amp=float(rng.uniform(2.0, 4.5)))  # parietal eminence
        c.bump(*_rotated([(side * 0.9 * a, -0.38 * b)], rot)[0], 0.28 * a, 0.3 * b, rot, out=rel, amp=float(-rng.uniform(2.0, 4.0)))  # temporal hollow
    c.ridge(tuple(_rotated([(0.0, -0.5 * b)], rot)[0]), tuple(_rotated([(0.0, 0.55 * b)], rot)[0]), 0.22 * a, out=rel, amp=float(rng.uniform(0.5, 2.0)))  # sagittal ridge
    c.bump(*_rotated([(0.0, 0.85 * b)], rot)[0], 0.5 * a, 0.25 * b, rot, out=rel, amp=float(rng.uniform(1.5, 4.0)))  # occiput
    rel += np.float32(1.2) * noise(rng, shape, c.mm(30.0))
    dome = dome + rel * (head >= 0.5) * np.float32(1.0 / c.f.mm_per_px)
    neck_h = _cylinder_height(neck, c.mm(40.0)) * np.float32(0.6)
    height = _smooth_max(dome, neck_h, c.mm(15.0))
    # Ears: a rim (helix) round a hollow (concha), standing off the side of the head.
    ear_h = _cylinder_height(ears, c.mm(4.0)) + np.float32(c.mm(20.0)) * (ears >= 0.5)
    ear_in = smoothstep((blur(ears, c.mm(3.0)) - np.float32(0.85)) * np.float32(8.0))
    height = np.maximum(height, ear_h - ear_in * np.float32(c.mm(3.0)))
    collar_y = b * (1.0 - flat) + rng.uniform(0, 18)
    # The neckline curves up at the sides of the neck (y = collar_y - 0.006 x^2 in head axes).
    ux = c.xx * np.float32(ca) + c.yy * np.float32(sa)
    neckline = np.float32(collar_y) - np.float32(0.006) * ux * ux
    neck = neck * smoothstep((neckline - (c.xx * np.float32(-sa) + c.yy * np.float32(ca))) * np.float32(1.0 / c.mm(1.5)) + 0.5)
    cov = np.maximum(np.maximum(head, ears), neck)
    u = u * np.float32(1.0 / a)
    # Hair grows on the whole scalp except in front of the frontal hairline (forehead).
    hairline = rng.uniform(0.55, 0.8) + 0.08 * fractal(rng, shape, c.mm(25.0), octaves=2)
    recession = rng.uniform(0.0, 0.25) if male else 0.0
    vv = v + np.float32(recession) * np.abs(u) * np.abs(u)
    hair_base = smoothstep((vv + hairline.astype(np.float32)) * np.float32(b / 6.0)) * head * (r2 < 0.985)
    # Whorl at the crown (behind the middle); hair lies away from it, spiralling, and forward in front.
    crown = (rng.uniform(-12, 12), rng.uniform(25, 50))
    dx = c.xx - np.float32(crown[0])
    dy = c.yy - np.float32(crown[1])
    spin = np.float32(rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.2))
    fx = dx - spin * dy
    fy = dy + spin * dx
    n = np.sqrt(fx * fx + fy * fy) + np.float32(1e-3)
    fx, fy = fx / n, fy / n
    fwd = smoothstep((np.float32(crown[1] - 10) - c.yy) * np.float32(1.0 / 60.0))
    fy = fy * (1.0 - fwd) - fwd * np.float32(1.0)
    fx = fx * (1.0 - fwd) + fwd * np.float32(rng.uniform(-0.4, 0.4)) + np.float32(0.15) * noise(rng, shape, c.mm(40))
    if rng.random() < 0.5:
        # A parting (centre or side) from the frontal hairline back towards the crown: the
        # hair is combed away from it on both sides (so a line of scalp shows between them).
        part_u = float(rng.uniform(-0.4, 0.4) * a)
        part_end = float(rng.uniform(0.3, 0.8) * crown[1])  # mm behind the middle
        vmm = v * np.float32(b)
        du = u * np.float32(a) - np.float32(part_u)
        along = smoothstep((np.float32(part_end) - vmm) * np.float32(1.0 / 15.0))
        near = 1.0 - smoothstep((np.abs(du) - np.float32(25.0)) * np.float32(1.0 / 45.0))
        wgt = along * near
        side = np.where(du >= 0, np.float32(1.0), np.float32(-1.0))
        # Away from the part and a little back, in canvas axes.
        px = side * np.float32(ca) - np.float32(0.35) * np.float32(-sa)
        py = side * np.float32(sa) - np.float32(0.35) * np.float32(ca)
        pn = np.float32(1.0 / math.sqrt(1.0 + 0.35 * 0.35))
        fx = fx * (1.0 - wgt) + wgt * px * pn
        fy = fy * (1.0 - wgt) + wgt * py * pn
    flow = _flow_from_angle_field(fx, fy)
    # Shade of the ears on the head and where the neck meets it; a sun-exposed vertex
    # (tanned, most on a bald head) and pinker ears.
    ao = _occlusion(height, cov, (c.mm(8.0), c.mm(30.0)), 0.5)
    sun = (head * smoothstep((np.float32(0.85) - r2) * np.float32(2.0))).astype(np.float32)
    tint = _skin_tint(None, ao, sun, fitz, rng.uniform(0.3, 0.9))
    redness = (0.6 * ears).astype(np.float32)
    clothing = np.zeros(shape, dtype=np.float32)
    # Shoulders in a shirt around the head, seen from above, with the neckline behind the neck.
    sw = rng.uniform(200, 250)
    top = b * rng.uniform(-0.1, 0.4)
    outline = [(-sw, 600.0), (-sw, top + 60), (-sw * 0.85, top + 15), (-sw * 0.5, top), (-60.0, top + 5), (-52.0, collar_y - 16), (-30.0, collar_y - 5.4), (0.0, collar_y), (30.0, collar_y - 5.4), (52.0, collar_y - 16), (60.0, top + 5), (sw * 0.5, top), (sw * 0.85, top + 15), (sw, top + 60), (sw, 600.0)]
    shoulders = c.fill(chaikin(_rotated(outline, rot), 3))
    clothing = shoulders * (1.0 - cov)
    oil_gain = float(rng.uniform(1.8, 3.0))
    return Body(cov, clothing, height.astype(np.float32), tint, hair_base.astype(np.float32), flow, redness, head >= 0.5, "scalp", male, oil_gain)


#: Iris colours (sRGB): dark brown, brown, hazel, green, blue, grey.
_IRIS = {"dark_brown": (0.22, 0.12, 0.06), "brown": (0.38, 0.22, 0.11), "hazel": (0.45, 0.36, 0.17), "green": (0.34, 0.42, 0.27), "blue": (0.36, 0.49, 0.62), "grey": (0.46, 0.50, 0.52)}


def _diamond_angle(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """A monotonic stand-in for the polar angle, 0..4 for a full turn (no trigonometry)."""
    s = np.abs(dx) + np.abs(dy) + np.float32(1e-6)
    return np.where(dy >= 0, np.where(dx >= 0, dy / s, 1.0 - dx / s), np.where(dx < 0, 2.0 - dy / s, 3.0 + dx / s)).astype(np.float32)


def _eye(
    rng: np.random.Generator,
    c: _Canvas,
    centre: tuple[float, float],
    side: float,
    look: dict[str, object],
    rel: np.ndarray,
    tint: np.ndarray,
    lashes: np.ndarray,
) -> tuple[tuple[slice, slice], np.ndarray, Callable[[np.ndarray], None]] | None:
    """One open eye, drawn in a small window around it.

    The lid opening (an almond: a fuller upper lid whose highest point is towards the
    nose, a flatter lower lid, the outer corner a little higher) is returned as
    coverage of the window (it is cut out of the skin: the eye is neither skin nor
    hair); the lid crease is added to ``rel`` and darkens ``tint``, and the upper lid's
    margin is marked in ``lashes`` (where lashes grow). The painter draws the eyeball
    into the background's window: sclera shaded under the upper lid and towards the
    corners with a pink caruncle, the iris (radial fibres, a darker limbal ring, a
    lighter collarette), the pupil, the specular highlight of the light, the dark lash
    line and the wet lower lid margin.

    Returns
    -------
    (rows, cols), opening (h, w) float32, painter — or None when the eye is off the canvas.
    """
    ex, ey = centre
    hw = float(rng.uniform(13.5, 15.5))  # half the palpebral fissure (mm)
    hu = float(rng.uniform(5.0, 6.5)) * float(look["open"])  # upper lid above the corners' line
    hl = float(rng.uniform(3.0, 4.2)) * float(look["open"])  # lower lid below it
    tilt = float(rng.uniform(0.5, 2.0))  # outer corner higher (mm)
    fib = rng.uniform(-1.0, 1.0, 4 * 40 + 1).astype(np.float32)
    fib[-1] = fib[0]
    crease_h = float(rng.uniform(4.0, 8.0))
    win = c._window(ex - hw - 3.0, ex + hw + 3.0, ey - hu - crease_h - 4.0, ey + hl + 8.0)
    if win is None:
        return None
    rs, cs = win
    mmpp = c.f.mm_per_px
    x = c.x[None, cs] - np.float32(ex)
    y = c.y[rs, None] - np.float32(ey)
    t = x * np.float32(side / hw)  # -1 at the inner corner, +1 at the outer corner
    t2 = t * t
    yc = -np.float32(tilt) * t
    up_shape = (np.float32(0.5) * (1.0 - t2) + np.float32(0.5) * (1.0 - t2 * t2)) * (1.0 - np.float32(0.12) * t)
    y_up = yc - np.float32(hu) * up_shape
    y_lo = yc + np.float32(hl) * (1.0 - t2) * (1.0 + np.float32(0.15) * t)
    inside = np.minimum(y - y_up, y_lo - y) * np.float32(1.0 / mmpp)
    opening = np.clip(inside + np.float32(0.5), 0.0, 1.0).astype(np.float32)
    # Lashes grow on the upper lid's margin, just above the opening.
    above = (y_up - y) * np.float32(1.0 / 1.2)
    band = smoothstep(above * np.float32(4.0)) * smoothstep((np.float32(1.0) - above) * np.float32(4.0)) * smoothstep((np.float32(0.97) - np.abs(t)) * np.float32(8.0))
    lashes[rs, cs] = np.maximum(lashes[rs, cs], band)
    # The lid crease follows the upper lid a few mm above it; the upper lid is a little darker.
    dc = (y - (y_up - np.float32(crease_h) * (1.0 - np.float32(0.4) * t2))) * np.float32(1.0 / 2.0)
    crease = np.maximum(1.0 - dc * dc, 0.0) * smoothstep((np.float32(1.1) - np.abs(t)) * np.float32(4.0))
    rel[rs, cs] -= np.float32(1.5) * crease
    lid = smoothstep(np.clip(-dc, 0.0, 4.0) * np.float32(2.0)) * smoothstep(above * np.float32(3.0)) * smoothstep((np.float32(1.1) - np.abs(t)) * np.float32(4.0))
    lid_col = 1.0 - lid[..., None] * np.array([0.0, 0.04, 0.05], np.float32)[None, None, :]
    # Below the opening: the lower lid's pinker margin, then a faint shadow under it.
    bl = (y - y_lo) * np.float32(1.0 / 0.8)
    margin = np.maximum(1.0 - (bl - np.float32(0.5)) ** 2 * np.float32(4.0), 0.0) * smoothstep((np.float32(1.0) - np.abs(t)) * np.float32(6.0))
    under = np.maximum(1.0 - ((bl - np.float32(4.0)) * np.float32(1.0 / 3.0)) ** 2, 0.0) * smoothstep((np.float32(1.1) - np.abs(t)) * np.float32(3.0))
    lid_col = lid_col - margin[..., None] * np.array([0.0, 0.1, 0.1], np.float32)[None, None, :]
    tint[rs, cs] *= (1.0 - np.float32(0.12) * crease - np.float32(0.06) * lid - np.float32(0.08) * under)[..., None] * lid_col

    iris_rgb = srgb_to_linear(look["iris"]).astype(np.float32)
    ri = float(look["iris_r"])
    gx, gy = look["gaze"]
    ix, iy = float(gx) * hw, float(gy) - 0.2 * hu  # iris centre relative to the eye centre (both eyes look the same way)
    hx, hy = look["glint"]

    def paint(bg: np.ndarray) -> None:
        out = bg[rs, cs]
        # Sclera: off-white, pinker towards the corners, a pink caruncle at the inner corner.
        sclera = srgb_to_linear((0.80, 0.76, 0.72)).astype(np.float32)
        pink = srgb_to_linear((0.82, 0.55, 0.52)).astype(np.float32)
        corner = smoothstep((np.abs(t) - np.float32(0.55)) * np.float32(2.5))
        col = sclera[None, None, :] + corner[..., None] * (pink - sclera)[None, None, :]
        car = np.clip(1.0 - ((t + np.float32(0.93)) * np.float32(1.0 / 0.1)) ** 2 - (y - yc) ** 2 * np.float32(1.0 / 4.0), 0.0, 1.0)
        col = col + car[..., None] * (srgb_to_linear((0.75, 0.38, 0.38)).astype(np.float32) - col)
        # Iris and pupil.
        dx = x - np.float32(ix)
        dy = y - np.float32(iy)
        r = np.sqrt(dx * dx + dy * dy) * np.float32(1.0 / ri)
        ang = _diamond_angle(dx, dy) * np.float32(40.0)
        fibres = np.interp(ang.ravel(), np.arange(fib.size, dtype=np.float32), fib).reshape(ang.shape).astype(np.float32)
        shade = 1.0 + np.float32(0.28) * fibres * smoothstep((r - np.float32(0.3)) * np.float32(5.0))
        ring = smoothstep((r - np.float32(0.78)) * np.float32(5.0))  # darker limbus
        coll = np.maximum(1.0 - ((r - np.float32(0.45)) * np.float32(1.0 / 0.12)) ** 2, 0.0)  # lighter collarette
        iris = iris_rgb[None, None, :] * (shade * (1.0 - np.float32(0.55) * ring) * (1.0 + np.float32(0.35) * coll))[..., None]
        in_iris = np.clip((np.float32(1.0) - r) * np.float32(ri / mmpp) + np.float32(0.5), 0.0, 1.0)
        col = col + in_iris[..., None] * (iris - col)
        pr = float(look["pupil"])
        in_pupil = np.clip((np.float32(pr) - r) * np.float32(ri / mmpp) + np.float32(0.5), 0.0, 1.0)
        col = col * (1.0 - np.float32(0.97) * in_pupil)[..., None]
        # The upper lid shadows the eyeball; the ball turns away towards the corners.
        below = (y - y_up) * np.float32(1.0 / 2.5)
        col = col * ((np.float32(0.35) + np.float32(0.65) * smoothstep(below)) * (1.0 - np.float32(0.35) * t2) * (1.0 - np.float32(0.15) * smoothstep((y - y_lo) * np.float32(1.0 / 1.5) + np.float32(1.0))))[..., None]
        # Dark lash line along the upper lid, the wet lower lid margin.
        lash_line = smoothstep((np.float32(0.6) - (y - y_up)) * np.float32(1.0 / 0.35))
        col = col * (1.0 - np.float32(0.8) * lash_line)[..., None]
        wet = np.maximum(1.0 - ((y_lo - y - np.float32(0.35)) * np.float32(1.0 / 0.25)) ** 2, 0.0) * (1.0 - t2)
        col = col + (np.float32(0.12) * wet)[..., None]
        # The light's reflection on the cornea (same place in both eyes).
        gdx = dx - np.float32(hx * ri)
        gdy = dy - np.float32(hy * ri)
        glint = np.clip((np.float32(0.13 * ri) - np.sqrt(gdx * gdx + gdy * gdy)) * np.float32(1.0 / mmpp) + np.float32(0.5), 0.0, 1.0)
        col = col + glint[..., None] * (np.float32(1.0) - col)
        out[...] = col

    return (rs, cs), opening, paint


def _face(rng: np.random.Generator, c: _Canvas, view: str, male: bool, fitz: int) -> Body:
    """Regions of the face that carry hair: the brows (with the open eyes and their lashes)
    and the cheeks and jaw (beard). The framing keeps the nose and mouth out. The eyes
    (see :func:`_eye`) are holes in the skin's coverage painted by ``Body.paint``."""
    shape = c.shape
    a = rng.uniform(68, 78)
    b = rng.uniform(100, 112)
    jaw = rng.uniform(0.7, 0.85)
    pts = []
    for i in range(36):
        t = 2 * math.pi * i / 36
        x, y = math.sin(t), -math.cos(t)
        w = a * (1.0 if y < 0.2 else 1.0 - (1.0 - jaw) * ((y - 0.2) / 0.8) ** 1.5)
        pts.append((x * w, y * b + 10))
    face = c.fill(chaikin(np.array(pts) + rng.normal(0, 1.0, (36, 2)), 3))
    neck = c.fill(_tube_poly((0, 400), (0, 70), 55, 48, rng))
    cov = np.maximum(face, neck)
    height = _smooth_max(_cylinder_height(face, c.mm(a * 0.9)), _cylinder_height(neck, c.mm(45)) * 0.7, c.mm(10.0))
    rel = np.zeros(shape, dtype=np.float32)
    tint = np.ones(shape + (3,), dtype=np.float32)
    brow_y = rng.uniform(-48, -40)
    eye_y = brow_y + rng.uniform(20, 25)
    eye_ok = np.ones(shape, dtype=bool)
    lashes = np.zeros(shape, dtype=np.float32)
    for s in (1.0, -1.0):
        c.bump(s * 34, eye_y - 2, 24, 15, out=rel, amp=-6.0)  # eye socket
        c.bump(s * 34, eye_y + 1, 16, 8, out=rel, amp=5.0)  # the eyeball under the lids
        c.bump(s * 48, eye_y + 32, 30, 18, out=rel, amp=4.0)  # cheekbone
        eye_ok &= c.bump(s * 34, eye_y, 26, 12) < 0.05
    # Open eyes: both look the same way and reflect the light in the same place.
    if fitz >= 4:
        iris = ("dark_brown", "brown")[int(rng.choice(2, p=[0.8, 0.2]))]
    else:
        iris = ("dark_brown", "brown", "hazel", "green", "blue", "grey")[int(rng.choice(6, p=[0.1, 0.3, 0.15, 0.1, 0.3, 0.05]))]
    look: dict[str, object] = {
        "iris": _IRIS[iris],
        "iris_r": float(rng.uniform(5.6, 6.2)),
        "pupil": float(rng.uniform(0.28, 0.45)),
        "gaze": (float(rng.uniform(-0.07, 0.07)), float(rng.uniform(-0.5, 0.5))),
        "glint": (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.55, -0.15))),
        "open": float(rng.uniform(0.8, 1.1)),
    }
    painters = []
    for s in (1.0, -1.0):
        eye = _eye(rng, c, (s * 33.0, eye_y), s, look, rel, tint, lashes)
        if eye is not None:
            (rs, cs), opening, painter = eye
            cov[rs, cs] *= 1.0 - opening
            painters.append(painter)
    rel -= 3.0 * c.bump(0, eye_y - 4, 10, 14)  # bridge between the eyes
    c.ridge((0, eye_y - 4), (0, eye_y + 60), 12.0, out=rel, amp=8.0)  # the nose's dorsum below it
    for s in (1.0, -1.0):
        c.bump(s * 12, eye_y + 6, 8, 10, out=rel, amp=-3.0)  # the inner corners of the eyes, beside the bridge
    c.bump(0, brow_y - 4, 30, 12, out=rel, amp=2.0)  # glabella
    height = height + rel / np.float32(c.f.mm_per_px)
    redness = (0.5 * (c.bump(48, 25, 28, 22) + c.bump(-48, 25, 28, 22))).astype(np.float32) * np.float32(rng.uniform(0, 1))
    # Hair: eyebrows and lashes always; beard on most men; the scalp hairline at the top.
    arch = rng.uniform(4, 9)
    brows = np.zeros(shape, dtype=np.float32)
    for s in (1.0, -1.0):
        for i in range(6):
            t0, t1 = i / 6, (i + 1) / 6
            x0, x1 = s * (14 + 44 * t0), s * (14 + 44 * t1)
            y0 = brow_y - arch * (1 - (2 * t0 - 0.8) ** 2)
            y1 = brow_y - arch * (1 - (2 * t1 - 0.8) ** 2)
            brows = np.maximum(brows, c.ridge((x0, y0), (x1, y1), 7.5 - 3.5 * t0))
    hair_base = np.maximum(smoothstep(brows * 4.0), smoothstep(lashes * 3.0))
    scalp_top = smoothstep((np.float32(-b * 0.78) - c.yy + np.float32(6) * noise(rng, shape, c.mm(20))) * np.float32(1.0 / 3.0))
    hair_base = np.maximum(hair_base, scalp_top * face)
    if male and rng.random() < 0.8:
        lower = smoothstep((c.yy - np.float32(rng.uniform(15, 35))) * np.float32(1.0 / 6.0))
        cheeks = smoothstep((np.abs(c.xx) - np.float32(22)) * np.float32(1.0 / 6.0)) * smoothstep((c.yy - np.float32(10)) * np.float32(1.0 / 8.0))
        chin = smoothstep((c.yy - np.float32(78)) * np.float32(1.0 / 5.0))
        neck_beard = smoothstep((np.float32(140) - c.yy) * np.float32(1.0 / 15.0)) * neck
        beard = np.maximum(np.maximum(cheeks * lower, chin) * face, neck_beard)
        beard = beard * smoothstep((0.7 + 0.3 * fractal(rng, shape, c.mm(15.0), octaves=2)) * 2.5 - 0.5)
        hair_base = np.maximum(hair_base, beard)
    # Brows: the medial head points up, the body laterally with the upper hairs pointing down
    # and the lower ones up (they meet along the brow's middle line), the tail laterally and
    # down. Lashes and beard point down; the scalp back.
    near_eye = np.abs(c.yy - np.float32(eye_y - 3.0)) < 6
    t = np.clip((np.abs(c.xx) - np.float32(14.0)) * np.float32(1.0 / 44.0), 0.0, 1.0)
    q = np.float32(2.0) * t - np.float32(0.8)
    rel = np.clip((c.yy - (np.float32(brow_y) - np.float32(arch) * (1.0 - q * q))) * np.float32(1.0 / 5.0), -1.0, 1.0)
    above = c.yy < eye_y - 6
    fx = np.sign(c.xx) * np.where(above, np.float32(0.25) + np.float32(1.2) * t, np.float32(1.0))
    brow_fy = np.float32(-1.2) * (1.0 - t) * (1.0 - t) - np.float32(0.45) * rel + np.float32(0.35) * t
    fy = np.where(above, brow_fy, np.float32(1.2)).astype(np.float32) + np.float32(0.2) * noise(rng, shape, c.mm(20))
    # Upper lashes of open eyes curl up and out over the lid.
    fx = np.where(near_eye, np.float32(0.45) * np.sign(c.xx), fx).astype(np.float32)
    fy = np.where(near_eye, np.float32(-1.0), fy).astype(np.float32)
    fy = np.where(c.yy < -b * 0.7, -1.5, fy).astype(np.float32)
    fx = np.where((np.abs(c.xx) < 18) & ~near_eye & ~above, np.float32(0.3) * np.sign(c.xx), fx).astype(np.float32)
    flow = _flow_from_angle_field(fx.astype(np.float32), fy)
    clothing = np.zeros(shape, dtype=np.float32)
    if rng.random() < 0.5:  # a collar across the neck
        collar = smoothstep((c.yy - np.float32(rng.uniform(150, 200)) - np.float32(0.002) * c.xx * c.xx) * np.float32(1.0 / (1.5 * c.f.mm_per_px)) + 0.5)
        clothing = collar * np.clip(blur(neck, c.mm(15.0)) * 2.0, 0.0, 1.0)
        cov = cov * (1.0 - clothing)

    def paint(bg: np.ndarray) -> np.ndarray:
        for p in painters:
            p(bg)
        return bg

    return Body(cov, clothing, height.astype(np.float32), tint, hair_base.astype(np.float32), flow, redness, (face >= 0.5) & eye_ok, "face", male, paint=paint if painters else None)


# --------------------------------------------------------------------------- background


_WALL = [(0.92, 0.91, 0.88), (0.85, 0.86, 0.86), (0.88, 0.84, 0.76), (0.74, 0.82, 0.86), (0.80, 0.86, 0.80), (0.95, 0.95, 0.95), (0.55, 0.56, 0.58)]
_SHEET = [(0.93, 0.94, 0.95), (0.60, 0.74, 0.86), (0.58, 0.78, 0.72), (0.88, 0.88, 0.84)]
_CLOTH = [(0.12, 0.14, 0.22), (0.08, 0.08, 0.08), (0.45, 0.46, 0.48), (0.62, 0.12, 0.14), (0.20, 0.35, 0.55), (0.30, 0.45, 0.30), (0.85, 0.82, 0.74), (0.75, 0.55, 0.45), (0.90, 0.90, 0.92), (0.52, 0.32, 0.22)]
_DRAPE = [(0.28, 0.50, 0.68), (0.30, 0.58, 0.52), (0.42, 0.62, 0.74)]
_SKINLIKE = [(0.90, 0.74, 0.62), (0.80, 0.60, 0.48), (0.62, 0.44, 0.34), (0.93, 0.80, 0.74), (0.74, 0.56, 0.50)]
_REDDISH = [(0.72, 0.22, 0.20), (0.55, 0.16, 0.18), (0.86, 0.50, 0.48), (0.80, 0.40, 0.28), (0.45, 0.12, 0.14)]


def srgb_to_linear(rgb: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """sRGB (0..1) to linear light, for a few colour constants (not images)."""
    a = np.asarray(rgb, dtype=np.float64)
    return np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _jitter_colour(rng: np.random.Generator, col: tuple[float, float, float], amount: float) -> np.ndarray:
    c = np.asarray(col) * (1.0 + amount * rng.standard_normal(3))
    return srgb_to_linear(np.clip(c, 0.02, 0.98))


def _fabric(rng: np.random.Generator, c: _Canvas, colour: np.ndarray, folds: float, pattern: bool) -> np.ndarray:
    shape = c.shape
    ang = rng.uniform(0, math.pi)
    fold = oriented_noise(rng, shape, c.mm(rng.uniform(150, 400)), c.mm(rng.uniform(15, 50)), ang)
    shade = 1.0 + np.float32(folds) * fold
    if c.mm(0.6) >= 1.0:  # the weave shows only when a thread is at least a pixel wide
        weave = oriented_noise(rng, shape, c.mm(3.0), c.mm(0.6), ang + 0.3) + oriented_noise(rng, shape, c.mm(3.0), c.mm(0.6), ang + 1.87)
        shade = shade * (1.0 + np.float32(0.03) * weave)
    out = np.empty(shape + (3,), dtype=np.float32)
    out[...] = colour
    if pattern:
        other = _jitter_colour(rng, _CLOTH[int(rng.integers(len(_CLOTH)))], 0.1)
        period = c.mm(rng.uniform(4, 30))
        pa = rng.uniform(0, math.pi)
        t = (c.xx * np.float32(math.cos(pa)) + c.yy * np.float32(math.sin(pa))) * np.float32(1.0 / c.f.mm_per_px / period)
        stripes = smoothstep((np.abs(t - np.floor(t) - 0.5) - 0.25) * np.float32(max(period, 2.0) / 2.0) + 0.5)
        if rng.random() < 0.4:
            t2 = (-c.xx * np.float32(math.sin(pa)) + c.yy * np.float32(math.cos(pa))) * np.float32(1.0 / c.f.mm_per_px / period)
            stripes = np.maximum(stripes, smoothstep((np.abs(t2 - np.floor(t2) - 0.5) - 0.25) * np.float32(max(period, 2.0) / 2.0) + 0.5))
        out = out + stripes[..., None] * (other - colour)
    return out * shade[..., None]


def build_background(rng: np.random.Generator, framing: Framing, body: Body, kind: str) -> np.ndarray:
    """Linear-RGB background of the canvas, with the body's shadow on it.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    framing : Framing
        Canvas geometry.
    body : Body
        The body (for its drop shadow).
    kind : str
        One of :data:`BACKGROUNDS`.

    Returns
    -------
    (H, W, 3) float32 ndarray
    """
    c = _Canvas(framing)
    shape = c.shape
    if kind == "wall":
        col = _jitter_colour(rng, _WALL[int(rng.integers(len(_WALL)))], 0.04)
        out = np.empty(shape + (3,), dtype=np.float32)
        out[...] = col
        tex = 1.0 + np.float32(0.015) * fractal(rng, shape, c.mm(4.0), octaves=2)
        out *= tex[..., None]
        if rng.random() < 0.4:  # a room corner or door frame edge
            x0 = rng.uniform(-0.5, 0.5) * shape[1] * c.f.mm_per_px + c.f.focus_mm[0]
            side = smoothstep((c.xx - np.float32(x0)) / np.float32(c.f.mm_per_px * 1.5) + 0.5)
            out *= (1.0 - np.float32(rng.uniform(0.1, 0.3)) * side)[..., None]
    elif kind == "sheet":
        out = _fabric(rng, c, _jitter_colour(rng, _SHEET[int(rng.integers(len(_SHEET)))], 0.03), rng.uniform(0.06, 0.18), False)
    elif kind == "clothing":
        out = _fabric(rng, c, _jitter_colour(rng, _CLOTH[int(rng.integers(len(_CLOTH)))], 0.08), rng.uniform(0.1, 0.25), rng.random() < 0.35)
    elif kind == "drape":
        out = _fabric(rng, c, _jitter_colour(rng, _DRAPE[int(rng.integers(len(_DRAPE)))], 0.05), rng.uniform(0.15, 0.3), False)
    elif kind == "skin_like":
        out = _fabric(rng, c, _jitter_colour(rng, _SKINLIKE[int(rng.integers(len(_SKINLIKE)))], 0.05), rng.uniform(0.03, 0.15), rng.random() < 0.2)
    elif kind == "reddish":
        out = _fabric(rng, c, _jitter_colour(rng, _REDDISH[int(rng.integers(len(_REDDISH)))], 0.06), rng.uniform(0.05, 0.2), rng.random() < 0.25)
    else:
        raise ValueError(f"unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}")
    # The patient's shadow on the background, offset from the body and soft.
    dx, dy = rng.uniform(-0.04, 0.04) * shape[1], rng.uniform(0.0, 0.05) * shape[0]
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    sh = cv2.warpAffine(body.coverage, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    sh = blur(sh, 0.02 * max(shape))
    out *= (1.0 - np.float32(rng.uniform(0.1, 0.45)) * sh)[..., None]
    # A large-scale brightness gradient across the background.
    g = 1.0 + np.float32(0.25) * noise(rng, shape, max(shape) * 0.8)
    out *= np.clip(g, 0.5, 1.5)[..., None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def clothing_occluder(rng: np.random.Generator, framing: Framing) -> np.ndarray:
    """Fabric colour for clothing in front of the body (waistband, sleeves, straps)."""
    c = _Canvas(framing)
    return _fabric(rng, c, _jitter_colour(rng, _CLOTH[int(rng.integers(len(_CLOTH)))], 0.08), rng.uniform(0.1, 0.25), rng.random() < 0.3)


def ruler(rng: np.random.Generator, framing: Framing) -> tuple[np.ndarray, np.ndarray]:
    """A millimetre ruler lying in the scene, as (coverage, linear RGB) on the canvas.

    Clinical photos often include one; it hides skin, so it is background.
    """
    c = _Canvas(framing)
    h, w = c.shape
    length = rng.uniform(80, 160)
    width = rng.uniform(14, 24)
    ang = rng.uniform(-0.5, 0.5) + (math.pi / 2 if rng.random() < 0.3 else 0.0)
    cx = c.f.focus_mm[0] + rng.uniform(-0.4, 0.4) * w * c.f.mm_per_px
    cy = c.f.focus_mm[1] + rng.uniform(-0.4, 0.4) * h * c.f.mm_per_px
    ca, sa = math.cos(ang), math.sin(ang)
    corners = np.array([[-length / 2, -width / 2], [length / 2, -width / 2], [length / 2, width / 2], [-length / 2, width / 2]])
    poly = np.stack([corners[:, 0] * ca - corners[:, 1] * sa + cx, corners[:, 0] * sa + corners[:, 1] * ca + cy], axis=1)
    cov = c.fill(poly)
    base = _jitter_colour(rng, (0.95, 0.95, 0.92) if rng.random() < 0.7 else (0.95, 0.85, 0.35), 0.02)
    u = (c.xx - np.float32(cx)) * np.float32(ca) + (c.yy - np.float32(cy)) * np.float32(sa)
    v = -(c.xx - np.float32(cx)) * np.float32(sa) + (c.yy - np.float32(cy)) * np.float32(ca)
    frac = u - np.floor(u)
    tick_w = np.float32(max(0.15, 0.6 * c.f.mm_per_px))
    ticks = (np.minimum(frac, 1.0 - frac) < tick_w * 0.5) & (v < -width / 2 + 3.0 + 3.0 * (np.abs(np.round(u) % 10) < 0.5))
    ink = blur(ticks.astype(np.float32), 0.5)
    col = np.empty((h, w, 3), dtype=np.float32)
    col[...] = base
    col *= (1.0 - 0.85 * ink)[..., None]
    return cov, col
