"""Skin colour and texture, non-lesion distractors, and eczematous lesions.

Colours are linear RGB (0..1). Healthy skin is a base tone for the Fitzpatrick type
modulated by melanin and haemoglobin mottling, pores, fine lines, freckles, moles,
vessels, tattoos and pen marks (the distractors a segmenter must not call lesion).

A lesion is an *opacity profile* ``o`` on the canvas: an irregular, ill-defined patch
whose label is exactly ``o >= 0.5``. Its look (erythema that turns violaceous or brown
on dark skin, papules, scale, excoriations, lichenification) is scaled by ``o`` and by
the lesion's contrast, so a faint lesion is labelled where its profile says, however
hard it is to see. Changing a lesion between visits moves the level at which its
profile is cut (shrink or grow), lowers its contrast (fade) or removes it (resolve).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ._fields import blur, draw_discs, fractal, noise, oriented_noise, polylines_alpha, ridges, smoothstep
from ._scene import Body, Framing, srgb_to_linear

#: Typical skin colour (sRGB, 0..1) of Fitzpatrick types I..VI under neutral light.
FITZPATRICK_SRGB: dict[int, tuple[float, float, float]] = {
    1: (0.96, 0.84, 0.77),
    2: (0.91, 0.75, 0.64),
    3: (0.83, 0.64, 0.51),
    4: (0.69, 0.50, 0.37),
    5: (0.49, 0.33, 0.23),
    6: (0.31, 0.20, 0.14),
}

# How far erythema shifts from red toward violaceous/brown with the skin type.
_DUSKY = {1: 0.03, 2: 0.08, 3: 0.22, 4: 0.5, 5: 0.78, 6: 0.92}

_ERYTHEMA = np.array([0.98, 0.55, 0.52], dtype=np.float32)
_VIOLACEOUS = np.array([0.60, 0.47, 0.66], dtype=np.float32)
_BROWN = np.array([0.58, 0.48, 0.40], dtype=np.float32)


@dataclass(frozen=True)
class Skin:
    """Healthy skin of one scene on the world canvas.

    Attributes
    ----------
    albedo : (H, W, 3) float32
        Linear-RGB reflectance with every non-lesion feature drawn in.
    oil : (H, W) float32
        Specular strength (sheen), 0..1.
    micro : (H, W) float32
        Fine relief (pores, lines) in canvas pixels, added to the body's height.
    tone : (3,) float32
        The base linear-RGB tone.
    distractors : tuple of str
        Which distractors were drawn (for the truth file).
    """

    albedo: np.ndarray
    oil: np.ndarray
    micro: np.ndarray
    tone: np.ndarray
    distractors: tuple[str, ...]


def skin_tone(rng: np.random.Generator, fitzpatrick: int) -> np.ndarray:
    """Linear-RGB base tone of a person of the given Fitzpatrick type (with individual variation)."""
    base = np.array(FITZPATRICK_SRGB[int(fitzpatrick)])
    # Undertone: pinker or more olive/yellow.
    under = rng.normal(0.0, 0.025)
    shift = np.array([0.0, -under, -2.0 * under])
    col = base * (1.0 + rng.normal(0.0, 0.025)) + shift + rng.normal(0.0, 0.012, 3)
    return srgb_to_linear(np.clip(col, 0.05, 0.99))


def build_skin(
    rng: np.random.Generator,
    framing: Framing,
    body: Body,
    fitzpatrick: int,
    *,
    distractor_rate: float = 1.0,
    texture: np.ndarray | None = None,
) -> Skin:
    """Healthy skin with texture and distractors on the world canvas.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    framing : Framing
        Canvas geometry and scale.
    body : Body
        Where the skin is, and its landmarks.
    fitzpatrick : int
        Skin type 1..6.
    distractor_rate : float
        Multiplies how often distractors are drawn (0 disables them).
    texture : (H, W) float32 ndarray, optional
        Real skin detail (ratio to its local mean, about 1) to multiply in.

    Returns
    -------
    Skin
    """
    shape = framing.world_shape
    mmpp = framing.mm_per_px

    def px(mm: float) -> float:
        return mm / mmpp

    tone = skin_tone(rng, fitzpatrick)
    # Melanin mottling (brownish) and haemoglobin blotches (pink): subtle at large scales.
    mel = fractal(rng, shape, px(rng.uniform(20, 60)), octaves=4, gain=0.6)
    mel_amp = np.float32(rng.uniform(0.02, 0.05))
    hb = fractal(rng, shape, px(rng.uniform(8, 30)), octaves=3)
    hb_amp = np.float32(rng.uniform(0.01, 0.05) * (1.0 if fitzpatrick <= 3 else 0.5))
    flush = np.clip(hb * hb_amp + body.redness * np.float32(0.35), 0.0, 1.0)
    # Luminance-only factors are gathered in one map before touching the colour image.
    # Fine mottling; finer than a few pixels it averages out in the photo (no sandpaper grain).
    fine_cell = px(rng.uniform(1.0, 4.0))
    fine_amp = rng.uniform(0.02, 0.05) * min(1.0, fine_cell / 3.0)
    lum = 1.0 + np.float32(fine_amp) * fractal(rng, shape, max(1.0, fine_cell), octaves=2)
    micro = np.zeros(shape, dtype=np.float32)
    # Skin relief: criss-crossing skin lines (furrows) and pores. Their depth is in mm,
    # so they shade strongly in close-ups and average out in whole-region shots.
    rough = rng.uniform(0.3, 1.0)  # young and smooth .. old and furrowed
    spacing = rng.uniform(0.7, 2.0)  # mm between furrows
    if px(spacing) >= 6.0:  # furrows narrower than a few pixels average out in the photo
        ang = rng.uniform(0, math.pi)
        furrows = np.zeros(shape, dtype=np.float32)
        for i in range(3):
            a = ang + i * rng.uniform(0.8, 1.3)
            f = ridges(oriented_noise(rng, shape, px(spacing * rng.uniform(4, 9)), px(spacing), a), rng.uniform(0.1, 0.2))
            furrows = np.maximum(furrows, f * np.float32(1.0 if i < 2 else 0.5))
        fade = np.float32(min(1.0, (px(spacing) - 6.0) / 6.0))
        micro -= furrows * np.float32(px(0.06 * rough)) * fade
        lum *= 1.0 - furrows * np.float32(0.07 * rough) * fade
    pore_r = px(rng.uniform(0.04, 0.09))
    if pore_r >= 0.5:
        n = int(rng.poisson(rng.uniform(0.5, 1.5) * shape[0] * shape[1] * mmpp * mmpp))
        pts = np.stack([rng.uniform(0, shape[1], n), rng.uniform(0, shape[0], n)], axis=1)
        pores = np.minimum(blur(draw_discs(shape, pts, np.full(n, pore_r)), max(0.5, pore_r * 0.6)) * np.float32(2.0), 1.0)
        micro -= pores * np.float32(px(0.04 * rough))
        lum *= 1.0 - pores * np.float32(0.08)
    if texture is not None:
        lum *= np.clip(texture, 0.6, 1.4)
    albedo = (1.0 + (mel_amp * mel)[..., None] * np.array([1.0, 1.15, 1.35], dtype=np.float32)) * tone
    albedo *= 1.0 + flush[..., None] * ((_ERYTHEMA - 1.0) * np.float32(0.6))
    albedo *= lum[..., None]
    if float(body.tint.min()) < 1.0:  # landmarks, creases and tan (views without them skip this)
        albedo *= body.tint

    skin_zone = body.coverage >= 0.5
    drawn: list[str] = []
    area_cm2 = float(np.count_nonzero(skin_zone)) * mmpp * mmpp / 100.0
    # Freckles: many small light-brown spots on fair skin.
    fr_density = {1: 2.0, 2: 1.2, 3: 0.4, 4: 0.1, 5: 0.03, 6: 0.02}[fitzpatrick] * rng.uniform(0.0, 1.0) ** 2 * distractor_rate
    n_fr = int(rng.poisson(min(fr_density * area_cm2, 3000)))
    if n_fr:
        pts = _points_in(rng, skin_zone, n_fr)
        radii = px(1.0) * rng.uniform(0.4, 1.6, n_fr)
        vals = rng.uniform(0.3, 1.0, n_fr)
        strength = rng.uniform(0.15, 0.4)
        _tint_spots(albedo, pts, radii, vals, max(0.4, px(0.3)), strength * (_BROWN - 1.0))
        drawn.append("freckles")
    # Moles: fewer, darker, larger, some raised.
    mole_rate = 0.25 if body.hair_kind == "scalp" else 1.0
    n_mole = int(rng.poisson(min(rng.uniform(0.0, 0.08) * area_cm2 * distractor_rate * mole_rate, 60)))
    if n_mole:
        pts = _points_in(rng, skin_zone, n_mole)
        radii = px(1.0) * rng.uniform(1.0, 3.5, n_mole)
        vals = rng.uniform(0.6, 1.0, n_mole)
        mole_col = np.array([0.24, 0.11, 0.05], dtype=np.float32) * np.float32(rng.uniform(0.5, 1.5))
        layer = _tint_spots(albedo, pts, radii, vals, max(0.4, px(0.25)), np.minimum(mole_col / np.maximum(tone, 1e-3), 1.0) - 1.0)
        micro += layer * np.float32(px(0.4))
        drawn.append("moles")
    # Veins (bluish, blurred by the skin above them) and fine red telangiectasia.
    if rng.random() < 0.5 * distractor_rate and fitzpatrick <= 4:
        lines = _vessels(rng, skin_zone, px(rng.uniform(30, 90)), None)
        _tint_lines(albedo, lines, px(rng.uniform(1.2, 3.0)), px(1.5), rng.uniform(0.3, 0.9) * (np.array([0.88, 0.92, 1.02], dtype=np.float32) - 1.0))
        drawn.append("veins")
    if rng.random() < 0.25 * distractor_rate:
        lines = _vessels(rng, skin_zone, px(rng.uniform(3, 10)), int(rng.integers(3, 12)))
        _tint_lines(albedo, lines, max(0.6, px(0.15)), max(0.4, px(0.1)), rng.uniform(0.3, 0.7) * (_ERYTHEMA - 1.0))
        drawn.append("telangiectasia")
    # Tattoo ink under the skin (dark, sometimes coloured, even red).
    if rng.random() < 0.12 * distractor_rate:
        width = px(rng.uniform(0.8, 3.0))
        lines = _scribble(rng, skin_zone, n=int(rng.integers(2, 7)), extent=px(rng.uniform(20, 80)))
        colours = [(0.10, 0.13, 0.18), (0.08, 0.08, 0.10), (0.55, 0.06, 0.07), (0.10, 0.30, 0.20)]
        ic = srgb_to_linear(colours[int(rng.choice(4, p=[0.5, 0.25, 0.12, 0.13]))])
        _tint_lines(albedo, lines, width, max(0.5, px(0.25)), 0.85 * (np.minimum(ic / np.maximum(tone, 1e-3), 1.0) - 1.0))
        drawn.append("tattoo")
    # Surgical-marker pen marks: crisp purple, blue or black lines and circles on the skin.
    if rng.random() < 0.15 * distractor_rate:
        pen = _pen_marks(rng, shape, skin_zone, max(1.0, px(rng.uniform(0.5, 1.2))), px(rng.uniform(8, 30)))
        pc = srgb_to_linear([(0.30, 0.12, 0.45), (0.10, 0.15, 0.45), (0.08, 0.08, 0.1)][int(rng.integers(3))])
        albedo *= 1.0 + (pen * np.float32(0.9))[..., None] * (np.minimum(pc / np.maximum(tone, 1e-3), 1.0) - 1.0)
        drawn.append("pen")
    # Sheen varies smoothly over the body (oilier in places), never in blotches.
    oil = np.float32(rng.uniform(0.15, 0.7)) * (1.0 + np.float32(0.25) * noise(rng, shape, px(120.0)))
    oil = np.clip(oil, 0.0, 1.0)
    return Skin(np.clip(albedo, 0.0, 1.0), oil.astype(np.float32), micro, tone, tuple(drawn))


def _box(shape: tuple[int, int], pts: np.ndarray, pad: float) -> tuple[int, int, int, int]:
    """Bounding box ``(y0, y1, x0, x1)`` of points plus a margin, clipped to the canvas."""
    h, w = shape
    x0 = int(max(0, math.floor(float(pts[:, 0].min()) - pad)))
    x1 = int(min(w, math.ceil(float(pts[:, 0].max()) + pad) + 1))
    y0 = int(max(0, math.floor(float(pts[:, 1].min()) - pad)))
    y1 = int(min(h, math.ceil(float(pts[:, 1].max()) + pad) + 1))
    return y0, y1, x0, x1


def _tint_spots(albedo: np.ndarray, pts: np.ndarray, radii: np.ndarray, vals: np.ndarray, sigma: float, delta: np.ndarray) -> np.ndarray:
    """Multiply ``albedo`` by ``1 + spots * delta`` where discs are drawn; returns the full-size spot layer."""
    shape = albedo.shape[:2]
    layer = np.zeros(shape, dtype=np.float32)
    if len(pts) == 0:
        return layer
    y0, y1, x0, x1 = _box(shape, pts, float(radii.max()) + 3.0 * sigma + 2.0)
    if y1 <= y0 or x1 <= x0:
        return layer
    local = blur(draw_discs((y1 - y0, x1 - x0), pts - np.array([x0, y0]), radii, vals), sigma)
    albedo[y0:y1, x0:x1] *= 1.0 + local[..., None] * np.asarray(delta, dtype=np.float32)
    layer[y0:y1, x0:x1] = local
    return layer


def _tint_lines(albedo: np.ndarray, lines: list[np.ndarray], width: float, sigma: float, delta: np.ndarray) -> None:
    """Multiply ``albedo`` by ``1 + line_alpha * delta`` along polylines (drawn in their bounding box)."""
    if not lines:
        return
    shape = albedo.shape[:2]
    pts = np.vstack(lines)
    y0, y1, x0, x1 = _box(shape, pts, width + 3.0 * sigma + 2.0)
    if y1 <= y0 or x1 <= x0:
        return
    off = np.array([x0, y0])
    local = polylines_alpha((y1 - y0, x1 - x0), [ln - off for ln in lines], max(1, int(round(width))), min(1.0, width))
    local = blur(local, sigma)
    albedo[y0:y1, x0:x1] *= 1.0 + local[..., None] * np.asarray(delta, dtype=np.float32)


def _points_in(rng: np.random.Generator, mask: np.ndarray, n: int) -> np.ndarray:
    flat = np.flatnonzero(mask.ravel())
    if flat.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    idx = flat[rng.integers(0, flat.size, size=n)]
    w = mask.shape[1]
    return np.stack([idx % w, idx // w], axis=1).astype(np.float64) + rng.uniform(-0.5, 0.5, (n, 2))


def _walk(rng: np.random.Generator, start: np.ndarray, step: float, n: int, wiggle: float) -> np.ndarray:
    d = rng.normal(size=2)
    d /= math.hypot(d[0], d[1]) + 1e-9
    pts = [start.astype(np.float64)]
    for _ in range(n):
        perp = np.array([-d[1], d[0]])
        d = d + wiggle * rng.normal() * perp
        d /= math.hypot(d[0], d[1]) + 1e-9
        pts.append(pts[-1] + d * step)
    return np.array(pts)


def _vessels(rng: np.random.Generator, mask: np.ndarray, seg: float, branches: int | None) -> list[np.ndarray]:
    n = int(rng.integers(2, 6)) if branches is None else branches
    starts = _points_in(rng, mask, n)
    return [_walk(rng, s, seg, int(rng.integers(4, 12)), 0.5) for s in starts]


def _scribble(rng: np.random.Generator, mask: np.ndarray, n: int, extent: float) -> list[np.ndarray]:
    centre = _points_in(rng, mask, 1)
    if len(centre) == 0:
        return []
    lines = []
    for _ in range(n):
        s = centre[0] + rng.normal(0, extent / 3, 2)
        lines.append(_walk(rng, s, extent / 8, int(rng.integers(6, 16)), 0.6))
    return lines


def _pen_marks(rng: np.random.Generator, shape: tuple[int, int], mask: np.ndarray, width: float, size: float) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.uint8)
    for c in _points_in(rng, mask, int(rng.integers(1, 4))):
        kind = rng.random()
        centre = (int(round(c[0] * 8)), int(round(c[1] * 8)))
        if kind < 0.5:
            axes = (int(round(size * 8 * rng.uniform(0.8, 1.2))), int(round(size * 8 * rng.uniform(0.6, 1.0))))
            cv2.ellipse(canvas, centre, axes, rng.uniform(0, 180), 0, rng.uniform(300, 360), 255, max(1, int(round(width))), cv2.LINE_AA, 3)
        elif kind < 0.8:
            d = rng.normal(size=2)
            d = d / (math.hypot(d[0], d[1]) + 1e-9) * size * 1.5
            p0 = (int(round((c[0] - d[0]) * 8)), int(round((c[1] - d[1]) * 8)))
            p1 = (int(round((c[0] + d[0]) * 8)), int(round((c[1] + d[1]) * 8)))
            cv2.line(canvas, p0, p1, 255, max(1, int(round(width))), cv2.LINE_AA, 3)
        else:
            cv2.circle(canvas, centre, int(round(max(width, 1.0) * 8)), 255, -1, cv2.LINE_AA, 3)
    return canvas.astype(np.float32) * np.float32(1.0 / 255.0)


# --------------------------------------------------------------------------- lesions


@dataclass(frozen=True)
class LesionSpec:
    """One eczematous patch on the canvas.

    Attributes
    ----------
    cx, cy : float
        Centre in canvas pixels.
    radius : float
        Semi-major axis in canvas pixels.
    aspect : float
        Minor / major axis, 0..1.
    angle : float
        Orientation in radians.
    level : float
        Where the profile field is cut: the label is ``field >= level``. Raising it
        shrinks the patch along its own irregular outline.
    softness : float
        Width of the opacity ramp around the border in field units (ill-definedness).
    roughness : float
        Amplitude of the noise that makes the outline irregular and patchy.
    contrast : float
        Strength of the look, 0..1 (faint to strong).
    dusky : float
        0 = red erythema; 1 = violaceous/brown (as on dark skin).
    papules, scale, excoriation, lichen : float
        Amounts of each morphology, 0..1.
    seed : int
        Seed of the patch's own noise (identical in both visits).
    residue : float
        Post-inflammatory pigment left when the lesion has resolved (below the
        label threshold; 0 for an active lesion).
    """

    cx: float
    cy: float
    radius: float
    aspect: float
    angle: float
    level: float
    softness: float
    roughness: float
    contrast: float
    dusky: float
    papules: float
    scale: float
    excoriation: float
    lichen: float
    seed: int
    residue: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def sample_lesions(
    rng: np.random.Generator,
    framing: Framing,
    body: Body,
    fitzpatrick: int,
    count: int,
    contrast: tuple[float, float],
    photo_shape: tuple[int, int],
) -> list[LesionSpec]:
    """Random eczematous patches placed on the skin, inside the photographed area.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    framing : Framing
        Canvas geometry and scale.
    body : Body
        Where lesions may go (``body.lesion_ok``).
    fitzpatrick : int
        Skin type (sets how dusky the erythema is).
    count : int
        Number of patches (some may coalesce).
    contrast : (lo, hi)
        Range of lesion contrast.
    photo_shape : (H, W)
        Photo size: centres are drawn inside the central photo-sized area.

    Returns
    -------
    list of LesionSpec
    """
    h, w = framing.world_shape
    ph, pw = photo_shape
    inner = np.zeros((h, w), dtype=bool)
    y0, x0 = (h - ph) // 2, (w - pw) // 2
    inner[y0 + ph // 12 : y0 + ph - ph // 12, x0 + pw // 12 : x0 + pw - pw // 12] = True
    ok = body.lesion_ok & inner
    if count <= 0 or not ok.any():
        return []
    mmpp = framing.mm_per_px
    pts = _points_in(rng, ok, count)
    specs = []
    lo_r = max(4.0, 6.0 / mmpp)
    hi_r = max(lo_r * 1.5, min(90.0 / mmpp, 0.3 * max(ph, pw)))
    for i, (x, y) in enumerate(pts):
        if i > 0 and rng.random() < 0.3:  # a satellite of the previous patch: they coalesce
            px_, py_ = pts[i - 1]
            ang = rng.uniform(0, 2 * math.pi)
            d = specs[-1].radius * rng.uniform(0.8, 1.6)
            x, y = px_ + d * math.cos(ang), py_ + d * math.sin(ang)
        radius = float(math.exp(rng.uniform(math.log(lo_r), math.log(hi_r))))
        dusky = float(np.clip(_DUSKY[fitzpatrick] + rng.normal(0, 0.1), 0.0, 1.0))
        specs.append(
            LesionSpec(
                cx=float(x),
                cy=float(y),
                radius=radius,
                aspect=float(rng.uniform(0.45, 1.0)),
                angle=float(rng.uniform(0, math.pi)),
                level=0.0,
                softness=float(rng.uniform(0.15, 0.6)),
                roughness=float(rng.uniform(0.25, 0.6)),
                contrast=float(contrast[0] + (contrast[1] - contrast[0]) * math.sqrt(rng.uniform(0.0, 1.0))),
                dusky=dusky,
                papules=float(rng.uniform(0, 1) ** 2),
                scale=float(rng.uniform(0, 1) ** 2),
                excoriation=float(rng.uniform(0, 1) ** 3),
                lichen=float(rng.uniform(0, 1) ** 3),
                seed=int(rng.integers(0, 2**31 - 1)),
            )
        )
    return specs


@dataclass(frozen=True)
class LesionLayers:
    """Lesions of one visit drawn on the canvas (float32).

    Attributes
    ----------
    opacity : (H, W)
        Combined opacity profile; the lesion label is ``opacity >= 0.5``.
    multiply : (H, W, 3)
        Colour multiplier (erythema, dusky tint, lichenified lines).
    scale : (H, W)
        Alpha of white or ashen scale.
    crust : (H, W)
        Alpha of excoriation crusts.
    relief : (H, W)
        Height added by papules and thickening, canvas pixels.
    dryness : (H, W)
        0..1, reduces the skin's sheen.
    box : (y0, y1, x0, x1) or None
        Bounding box of everything drawn (None when nothing was).
    """

    opacity: np.ndarray
    multiply: np.ndarray
    scale: np.ndarray
    crust: np.ndarray
    relief: np.ndarray
    dryness: np.ndarray
    box: tuple[int, int, int, int] | None = None


def render_lesions(specs: list[LesionSpec], framing: Framing, fitzpatrick: int) -> LesionLayers:
    """Draw lesion patches on the canvas.

    Each patch is drawn in its own bounding box from its own seed, so the same spec
    gives the same pixels in both visits.

    Parameters
    ----------
    specs : list of LesionSpec
        Patches of one visit.
    framing : Framing
        Canvas geometry and scale.
    fitzpatrick : int
        Skin type (scale looks white on fair skin, ashen on dark skin).

    Returns
    -------
    LesionLayers
    """
    h, w = framing.world_shape
    mmpp = framing.mm_per_px
    opacity = np.zeros((h, w), dtype=np.float32)
    mult = np.ones((h, w, 3), dtype=np.float32)
    scale = np.zeros((h, w), dtype=np.float32)
    crust = np.zeros((h, w), dtype=np.float32)
    relief = np.zeros((h, w), dtype=np.float32)
    dry = np.zeros((h, w), dtype=np.float32)
    box: list[int] | None = None
    for s in specs:
        ext = 1.75 * s.radius
        x0, x1 = max(0, int(math.floor(s.cx - ext))), min(w, int(math.ceil(s.cx + ext)) + 1)
        y0, y1 = max(0, int(math.floor(s.cy - ext))), min(h, int(math.ceil(s.cy + ext)) + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        bh, bw = y1 - y0, x1 - x0
        box = [y0, y1, x0, x1] if box is None else [min(box[0], y0), max(box[1], y1), min(box[2], x0), max(box[3], x1)]
        rng = np.random.default_rng(s.seed)
        # The same draws in the same order whatever the visit, so both visits share the pixels.
        field_noise = fractal(rng, (bh, bw), s.radius * 0.7, octaves=4, gain=0.55)
        interior = fractal(rng, (bh, bw), max(2.0, s.radius * 0.25), octaves=2)
        fine = noise(rng, (bh, bw), max(1.0, 0.25 / mmpp))
        hatch_a = rng.uniform(0, math.pi)
        hatch = np.maximum(
            ridges(oriented_noise(rng, (bh, bw), max(2.0, 4.0 / mmpp), max(0.8, 0.8 / mmpp), hatch_a), 0.2),
            ridges(oriented_noise(rng, (bh, bw), max(2.0, 4.0 / mmpp), max(0.8, 0.8 / mmpp), hatch_a + 1.3), 0.2),
        )
        n_pap = int(min(1500, s.papules * (math.pi * s.radius * s.radius * mmpp * mmpp) * 0.04))
        pap_xy = rng.uniform(0, 1, (n_pap, 2)) * np.array([bw, bh])
        pap_r = rng.uniform(0.5, 1.5, n_pap) / mmpp
        n_exc = int(s.excoriation * 6) if s.radius * mmpp > 8.0 else 0
        exc_c = rng.uniform(0.25, 0.75, (n_exc, 2)) * np.array([bw, bh])
        exc_len = rng.uniform(2.0, 9.0, n_exc) / mmpp
        exc_ang = rng.uniform(0, math.pi) + rng.normal(0, 0.25, n_exc)
        exc_w = rng.uniform(0.2, 0.6, n_exc) / mmpp

        xs = np.arange(x0, x1, dtype=np.float32) - np.float32(s.cx)
        ys = np.arange(y0, y1, dtype=np.float32) - np.float32(s.cy)
        ca, sa = np.float32(math.cos(s.angle)), np.float32(math.sin(s.angle))
        u = (xs[None, :] * ca + ys[:, None] * sa) * np.float32(1.0 / s.radius)
        v = (-xs[None, :] * sa + ys[:, None] * ca) * np.float32(1.0 / (s.radius * s.aspect))
        d = np.sqrt(u * u + v * v)
        field = (1.0 - d) + np.float32(s.roughness) * field_noise
        field -= np.float32(3.0) * smoothstep((d - np.float32(1.25)) * np.float32(1.0 / 0.4))  # fade to 0 inside the box
        o = smoothstep((field - np.float32(s.level)) * np.float32(1.0 / s.softness) + np.float32(0.5))
        if s.residue > 0:
            # A resolved lesion: faint brownish pigment, kept well below the label threshold.
            pig = np.minimum(o, np.float32(0.45)) * np.float32(s.residue)
            m = 1.0 + pig[..., None] * (_BROWN - 1.0) * np.float32(0.5)
            mult[y0:y1, x0:x1] *= m
            continue
        opacity[y0:y1, x0:x1] = np.maximum(opacity[y0:y1, x0:x1], o)
        strength = o * np.float32(s.contrast) * (np.float32(0.72) + np.float32(0.28) * np.clip(interior, -1.0, 1.0))
        tint = (1.0 - s.dusky) * _ERYTHEMA + s.dusky * (0.5 * _VIOLACEOUS + 0.5 * _BROWN)
        m = 1.0 + strength[..., None] * (tint - 1.0)
        if s.lichen > 0:
            lich = strength * np.float32(s.lichen) * (np.float32(0.12) + np.float32(0.28) * hatch)
            m *= (1.0 - lich)[..., None]
            relief[y0:y1, x0:x1] += strength * np.float32(s.lichen * 0.25 / mmpp) * hatch
        if n_pap:
            pap = blur(draw_discs((bh, bw), pap_xy, pap_r, 1.0), max(0.6, 0.5 / mmpp))
            pap *= o
            m *= 1.0 + (pap * np.float32(s.contrast * 0.35))[..., None] * (tint - 1.0)
            relief[y0:y1, x0:x1] += pap * np.float32(0.4 / mmpp)
        mult[y0:y1, x0:x1] *= m
        if s.scale > 0:
            # Scale: a whitish haze with brighter flakes, where the patch is most active.
            flakes = smoothstep((fine - np.float32(0.35)) * np.float32(2.5)) * np.float32(0.6) + smoothstep(interior) * np.float32(0.4)
            scale[y0:y1, x0:x1] = np.maximum(scale[y0:y1, x0:x1], flakes * o * o * np.float32(s.scale * 0.4 * min(1.0, s.contrast + 0.3)))
        if n_exc:
            lines = []
            for (cx, cy), ln, an in zip(exc_c, exc_len, exc_ang):
                dx, dy = 0.5 * ln * math.cos(an), 0.5 * ln * math.sin(an)
                lines.append(np.array([[cx - dx, cy - dy], [cx + dx, cy + dy]]))
            wpx = float(np.mean(exc_w))
            cr = blur(polylines_alpha((bh, bw), lines, max(1, int(round(wpx))), min(1.0, wpx)), max(0.4, 0.15 / mmpp)) * smoothstep(o * 2.0 - 0.5)
            crust[y0:y1, x0:x1] = np.maximum(crust[y0:y1, x0:x1], cr * np.float32(0.85))
        dry[y0:y1, x0:x1] = np.maximum(dry[y0:y1, x0:x1], o * np.float32(max(s.scale, s.lichen)))
    return LesionLayers(opacity, mult, scale, crust, relief, dry, None if box is None else (box[0], box[1], box[2], box[3]))


def apply_lesions(albedo: np.ndarray, layers: LesionLayers, tone: np.ndarray, fitzpatrick: int) -> np.ndarray:
    """Composite lesion layers onto a healthy-skin albedo (returns a new array)."""
    out = albedo.copy()
    if layers.box is None:
        return out
    y0, y1, x0, x1 = layers.box
    sub = albedo[y0:y1, x0:x1] * layers.multiply[y0:y1, x0:x1]
    scale_col = np.array([0.78, 0.75, 0.72], dtype=np.float32) if fitzpatrick <= 3 else np.maximum(tone * np.float32(1.9), np.float32(0.30)).astype(np.float32)
    sub += layers.scale[y0:y1, x0:x1, None] * (scale_col - sub)
    crust_col = np.array([0.20, 0.045, 0.03], dtype=np.float32)
    sub += layers.crust[y0:y1, x0:x1, None] * (crust_col - sub)
    out[y0:y1, x0:x1] = sub
    return out


def change_lesion(spec: LesionSpec, *, shrink: float = 0.0, fade: float = 1.0, resolve: bool = False, residue: float = 0.0) -> LesionSpec:
    """The same patch at the follow-up visit.

    Parameters
    ----------
    spec : LesionSpec
        The patch at baseline.
    shrink : float
        Raise the cut level by this much (negative grows the patch).
    fade : float
        Multiply the contrast by this.
    resolve : bool
        The patch is gone (only faint pigment ``residue`` may remain).
    residue : float
        Strength of post-inflammatory pigment of a resolved patch, 0..1.

    Returns
    -------
    LesionSpec
    """
    if resolve:
        return replace(spec, residue=max(residue, 1e-3))
    return replace(spec, level=spec.level + shrink, contrast=spec.contrast * fade)
