"""Region-level hair drawn as strands, alopecic patches, and their change between visits.

Hair grows in the view's hair-bearing base region (scalp, eyebrows, beard, body hair)
minus alopecic patches. The patches come from a *loss field* ``G`` (coalescing round
patches plus irregular noise, and an ophiasis band on the scalp): hair is kept where
``G`` is below a cut level chosen so that a given share of the base region is lost.
Regrowth raises the cut (patches shrink along their own outlines) or lowers ``G`` in
islands (regrowth in patches); further loss does the opposite.

The hair label of a visit is exact: the kept region (``rho >= 0.5``) plus any skin
that drawn strands cover densely (long hair lying over a patch covers it). Strands
grow from a fixed set of roots shared by both visits, so persistent hair looks the
same; hair that is new at the follow-up is shorter and often lighter, as regrowth is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ._fields import blur, draw_discs, fractal, noise, smoothstep
from ._scene import Body, Framing, srgb_to_linear

#: Hair colours (sRGB) from black to blond, red and white.
HAIR_COLOURS: dict[str, tuple[float, float, float]] = {
    "black": (0.05, 0.045, 0.04),
    "dark_brown": (0.15, 0.10, 0.07),
    "brown": (0.30, 0.20, 0.13),
    "auburn": (0.42, 0.19, 0.09),
    "blond": (0.70, 0.56, 0.36),
    "light_blond": (0.84, 0.74, 0.54),
    "white": (0.86, 0.85, 0.82),
}
_WHITE = srgb_to_linear(HAIR_COLOURS["white"])


@dataclass(frozen=True)
class HairSpec:
    """Hair of one scene (properties shared by both visits).

    Attributes
    ----------
    kind : str
        ``"scalp"``, ``"face"`` or ``"body"``.
    colour_name : str
        Key of :data:`HAIR_COLOURS`.
    grey : float
        Share of white strands (greying), 0..1.
    density : float
        Strands per mm^2 where hair is full.
    length_mm : float
        Mean strand length.
    width_mm : float
        Strand width.
    curl : float
        Curvature per segment (0 straight).
    spread : float
        Random deviation of strand direction from the flow, radians.
    seed : int
        Seed of the roots and strand shapes.
    """

    kind: str
    colour_name: str
    grey: float
    density: float
    length_mm: float
    width_mm: float
    curl: float
    spread: float
    seed: int

    def to_dict(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def sample_hair(rng: np.random.Generator, body: Body, fitzpatrick: int) -> HairSpec:
    """Random hair properties for a view (colour depends a little on skin type)."""
    if fitzpatrick >= 4:
        names, p = ["black", "dark_brown", "brown", "white"], [0.6, 0.25, 0.08, 0.07]
    else:
        names, p = ["black", "dark_brown", "brown", "auburn", "blond", "light_blond", "white"], [0.22, 0.28, 0.2, 0.07, 0.11, 0.06, 0.06]
    colour = str(rng.choice(names, p=p))
    grey = float(rng.uniform(0, 1) ** 3) if colour != "white" else 1.0
    kind = body.hair_kind
    if kind == "scalp":
        density = rng.uniform(0.8, 2.4)
        length = float(math.exp(rng.uniform(math.log(2.0), math.log(70.0))))
        width = rng.uniform(0.05, 0.1)
        curl = rng.uniform(0.0, 0.25) if rng.random() < 0.8 else rng.uniform(0.3, 0.8)
        spread = rng.uniform(0.1, 0.35)
    elif kind == "face":
        density = rng.uniform(0.5, 1.5)
        length = rng.uniform(3.0, 12.0)
        width = rng.uniform(0.06, 0.12)
        curl = rng.uniform(0.0, 0.4)
        spread = rng.uniform(0.15, 0.4)
    else:
        density = rng.uniform(0.08, 0.5)
        length = rng.uniform(5.0, 22.0)
        width = rng.uniform(0.04, 0.09)
        curl = rng.uniform(0.05, 0.5)
        spread = rng.uniform(0.2, 0.6)
    return HairSpec(kind, colour, grey, float(density), float(length), float(width), float(curl), float(spread), int(rng.integers(0, 2**31 - 1)))


def _lum(rgb: np.ndarray) -> float:
    return float(0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2])


def ensure_visible(spec: HairSpec, skin_tone: np.ndarray, target: float = 0.06) -> HairSpec:
    """Make hair that is labelled also visible: enough strand area times colour contrast.

    A hair-bearing region whose strands cover little skin in a colour close to the
    skin's (fine blond hair on fair skin) would be labelled hair but be invisible in the
    photo. The visibility ``coverage x contrast`` (coverage = density x length x width,
    contrast = relative luminance difference of hair and skin) is raised to ``target``
    by denser and longer hair, and failing that by a darker (or, on dark skin, lighter)
    colour.
    """
    skin = _lum(np.asarray(skin_tone))
    dens_cap = {"scalp": 3.0, "face": 2.0}.get(spec.kind, 0.7)
    len_cap = {"scalp": 80.0, "face": 14.0}.get(spec.kind, 28.0)

    def visibility(s: HairSpec) -> float:
        col = srgb_to_linear(HAIR_COLOURS[s.colour_name])
        hair = (1.0 - s.grey) * _lum(col) + s.grey * _lum(_WHITE)
        contrast = abs(skin - hair) / max(skin, hair, 1e-3)
        return s.density * s.length_mm * s.width_mm * contrast

    v = visibility(spec)
    if v >= target:
        return spec
    f = math.sqrt(target / max(v, 1e-6))
    out = replace(spec, density=min(dens_cap, spec.density * f), length_mm=min(len_cap, spec.length_mm * f))
    if visibility(out) < target:
        out = replace(out, colour_name="black" if skin > 0.12 else "white", grey=0.0)
    return out


def loss_field(rng: np.random.Generator, framing: Framing, body: Body) -> np.ndarray:
    """The alopecia field ``G`` of a scene: where it is high, hair is lost first.

    Round areata patches of several sizes that coalesce, irregular noise, and on the
    scalp sometimes an ophiasis band along the margin.

    Returns
    -------
    (H, W) float32 ndarray
    """
    h, w = framing.world_shape
    mmpp = framing.mm_per_px
    g = np.float32(0.45) * fractal(rng, (h, w), rng.uniform(15, 45) / mmpp, octaves=3)
    base = body.hair_base >= 0.5
    ys, xs = np.nonzero(base)
    n = int(rng.integers(2, 9))
    if len(xs):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(n):
            i = int(rng.integers(len(xs)))
            r = rng.uniform(8, 45) / mmpp
            d2 = ((xx - np.float32(xs[i])) ** 2 + (yy - np.float32(ys[i])) ** 2) * np.float32(1.0 / (r * r))
            t = np.maximum(1.0 - d2, 0.0)
            g += np.float32(rng.uniform(0.6, 1.4)) * t * t
    if body.hair_kind == "scalp" and rng.random() < 0.25:
        edge = body.hair_base.astype(np.float32)
        margin = 1.0 - np.clip(blur(edge, 20.0 / mmpp) * 1.6, 0.0, 1.0)
        g += np.float32(1.2) * margin
    return g.astype(np.float32)


def cut_level(g: np.ndarray, base: np.ndarray, loss: float) -> float:
    """Cut level of ``g`` at which a share ``loss`` (0..1) of the base region is hairless."""
    vals = g[base >= 0.5]
    if loss <= 0.0 or vals.size == 0:
        return float(g.max()) + 1.0
    if loss >= 1.0:
        return float(g.min()) - 1.0
    return float(np.quantile(vals, 1.0 - loss))


@dataclass(frozen=True)
class HairState:
    """Hair at one visit.

    Attributes
    ----------
    level : float
        Cut level of the loss field: hair is kept where the field is below it.
    field_shift : (H, W) float32 ndarray or None
        Added to the loss field at this visit (negative islands regrow, positive lose).
    regrowth_white : float
        Share of strands that are new at this visit and grow in white.
    """

    level: float
    field_shift: np.ndarray | None = field(default=None, compare=False, repr=False)
    regrowth_white: float = 0.0


@dataclass(frozen=True)
class HairLayers:
    """Hair of one visit on the canvas (float32).

    Attributes
    ----------
    rgb : (H, W, 3)
        Premultiplied strand colour.
    alpha : (H, W)
        Strand coverage 0..1.
    label : (H, W)
        Hair label field; the hair label is ``label >= 0.5`` (inside the body).
    kept : (H, W)
        ``rho``: hair kept in the base region, 0..1.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    label: np.ndarray
    kept: np.ndarray


def _roots(spec: HairSpec, framing: Framing, body: Body, max_strands: int) -> tuple[np.random.Generator, np.ndarray, float]:
    rng = np.random.default_rng(spec.seed)
    h, w = framing.world_shape
    mmpp = framing.mm_per_px
    zone = body.hair_base >= 0.05
    area_mm2 = float(zone.sum()) * mmpp * mmpp
    n = int(spec.density * area_mm2)
    boost = 1.0
    if n > max_strands:
        boost = n / max_strands
        n = max_strands
    flat = np.flatnonzero(zone.ravel())
    if flat.size == 0 or n == 0:
        return rng, np.zeros((0, 2)), boost
    idx = flat[rng.integers(0, flat.size, size=n)]
    pts = np.stack([idx % w, idx // w], axis=1).astype(np.float64) + rng.uniform(-0.5, 0.5, (n, 2))
    return rng, pts, boost


def render_hair(
    spec: HairSpec,
    framing: Framing,
    body: Body,
    g: np.ndarray,
    state: HairState,
    before_kept: np.ndarray | None = None,
    *,
    max_strands: int = 60000,
    colour_texture: np.ndarray | None = None,
) -> HairLayers:
    """Draw the hair of one visit.

    Parameters
    ----------
    spec : HairSpec
        Hair properties of the scene.
    framing : Framing
        Canvas geometry and scale.
    body : Body
        Base region and flow.
    g : (H, W) float32 ndarray
        Loss field of the scene.
    state : HairState
        This visit's cut level and field changes.
    before_kept : (H, W) float32 ndarray, optional
        ``kept`` of the baseline visit: strands kept now but not then are regrowth.
    max_strands : int
        Cap on strands drawn (wider strands make up for a cap).
    colour_texture : (H, W, 3) float32 ndarray, optional
        Real hair colours (linear RGB) to take strand colours from.

    Returns
    -------
    HairLayers
    """
    h, w = framing.world_shape
    mmpp = framing.mm_per_px
    field = g if state.field_shift is None else g + state.field_shift
    kept = body.hair_base * smoothstep((np.float32(state.level) - field) * np.float32(1.0 / 0.06) + np.float32(0.5))
    rng, roots, boost = _roots(spec, framing, body, max_strands)
    n = len(roots)
    # Every per-strand draw happens for every strand, whatever the visit.
    u = rng.random(n)
    length = spec.length_mm * rng.lognormal(0.0, 0.35 * math.log(2.0), n) / mmpp
    lie = rng.uniform(0.45, 1.0, n)  # hairs stand at an angle: projected length is shorter
    bright = rng.lognormal(0.0, 0.3 * math.log(2.0), n)
    white = rng.random(n) < spec.grey
    sheen = rng.random(n) < 0.12
    jitter = rng.normal(0.0, spec.spread, n)
    curl = spec.curl * rng.normal(1.0, 0.5, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    wobble = rng.normal(0.0, 0.08, (n, 6))
    white_new = rng.random(n)
    short_new = rng.uniform(0.25, 0.7, n)
    # Neighbouring hairs lie together (locks) and are cut to similar lengths.
    clump = noise(rng, (h, w), max(2.0, rng.uniform(2.0, 8.0) / mmpp))
    cut = noise(rng, (h, w), max(2.0, 40.0 / mmpp))
    # Locks catch the light differently: lighter and darker clumps of strands.
    shade = noise(rng, (h, w), max(2.0, rng.uniform(3.0, 10.0) / mmpp))

    ix = np.clip(np.round(roots[:, 0]).astype(np.int64), 0, w - 1) if n else np.zeros(0, np.int64)
    iy = np.clip(np.round(roots[:, 1]).astype(np.int64), 0, h - 1) if n else np.zeros(0, np.int64)
    rho = kept[iy, ix].astype(np.float64) if n else np.zeros(0)
    active = (rho >= 0.5) & (u < rho)
    new = np.zeros(n, dtype=bool)
    if before_kept is not None and n:
        new = active & (before_kept[iy, ix] < 0.5)
    length = np.where(new, length * short_new, length) * lie
    white = np.where(new, white_new < state.regrowth_white, white)

    rgb = np.zeros((h, w, 3), dtype=np.float32)
    alpha = np.zeros((h, w), dtype=np.float32)
    sel = np.flatnonzero(active)
    if sel.size:
        base_col = srgb_to_linear(HAIR_COLOURS[spec.colour_name]).astype(np.float64)
        if colour_texture is not None:
            cols = colour_texture[iy[sel], ix[sel]].astype(np.float64)
        else:
            cols = np.clip(base_col[None, :] * bright[sel, None], 0.0, 1.0)
        cols = cols * np.clip(1.0 + 0.3 * shade[iy[sel], ix[sel]], 0.5, 1.5)[:, None]
        cols = np.where(sheen[sel, None], np.clip(cols * 1.8 + 0.02, 0.0, 1.0), cols)
        cols = np.where(white[sel, None], _WHITE[None, :] * np.clip(bright[sel, None], 0.7, 1.1), cols)
        # Strand polylines, grown segment by segment along the flow (exact arithmetic only).
        k = 6
        d = body.flow[iy[sel], ix[sel]].astype(np.float64)
        perp = np.stack([-d[:, 1], d[:, 0]], axis=1)
        d = d + (jitter[sel] * 0.5 + 0.6 * clump[iy[sel], ix[sel]])[:, None] * perp
        length = length * np.clip(1.0 + 0.35 * cut[iy, ix], 0.4, 1.6) if n else length
        d /= np.sqrt((d * d).sum(axis=1, keepdims=True)) + 1e-12
        step = (length[sel] / k)[:, None]
        pts = np.empty((sel.size, k + 1, 2))
        pts[:, 0] = roots[sel]
        for j in range(k):
            perp = np.stack([-d[:, 1], d[:, 0]], axis=1)
            d = d + (curl[sel] / k + wobble[sel, j])[:, None] * perp
            d /= np.sqrt((d * d).sum(axis=1, keepdims=True)) + 1e-12
            pts[:, j + 1] = pts[:, j] + d * step
        width_px = spec.width_mm / mmpp * math.sqrt(boost)
        opacity = 0.75 if spec.colour_name in ("blond", "light_blond") else 0.92
        if width_px >= 1.0:
            rgb, alpha = _draw_opaque(pts, cols, (h, w), int(round(width_px)), opacity)
        else:
            rgb, alpha = _splat(pts, cols, (h, w), width_px * opacity)
    # The label: kept region plus skin that strands cover densely.
    spacing_px = 1.0 / math.sqrt(max(spec.density, 1e-3)) / mmpp
    ksz = int(min(31, max(3, 2 * int(spacing_px) + 1)))
    cover = cv2.blur(alpha, (ksz, ksz), borderType=cv2.BORDER_REFLECT)
    label = np.maximum(kept, cover * np.float32(0.5 / 0.3))
    return HairLayers(rgb, alpha, label.astype(np.float32), kept.astype(np.float32))


def _draw_opaque(pts: np.ndarray, cols: np.ndarray, shape: tuple[int, int], thick: int, opacity: float) -> tuple[np.ndarray, np.ndarray]:
    """Strands at least a pixel wide: antialiased polylines in a few colour groups, darkest first."""
    h, w = shape
    rgb = np.zeros((h, w, 3), dtype=np.float32)
    alpha = np.zeros((h, w), dtype=np.float32)
    lum = cols[:, 0] * 0.2126 + cols[:, 1] * 0.7152 + cols[:, 2] * 0.0722
    edges = np.quantile(lum, [0.2, 0.4, 0.6, 0.8]) if len(cols) > 50 else np.array([])
    group = np.searchsorted(edges, lum) if edges.size else np.zeros(len(cols), dtype=np.int64)
    int_pts = np.round(pts * 8.0).astype(np.int32)
    lo = np.clip(np.floor(pts.reshape(-1, 2).min(axis=0)).astype(int) - thick - 2, 0, [w, h])
    hi = np.clip(np.ceil(pts.reshape(-1, 2).max(axis=0)).astype(int) + thick + 3, 0, [w, h])
    (x0, y0), (x1, y1) = lo, hi
    if x1 <= x0 or y1 <= y0:
        return rgb, alpha
    offset = np.array([x0 * 8, y0 * 8], dtype=np.int32)
    sub_rgb = rgb[y0:y1, x0:x1]
    sub_a = alpha[y0:y1, x0:x1]
    for gi in range(int(group.max()) + 1):
        members = np.flatnonzero(group == gi)
        if members.size == 0:
            continue
        canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        cv2.polylines(canvas, int_pts[members] - offset, False, int(round(255 * opacity)), thickness=thick, lineType=cv2.LINE_AA, shift=3)
        a = canvas.astype(np.float32) * np.float32(1.0 / 255.0)
        col = cols[members].mean(axis=0).astype(np.float32)
        sub_rgb += a[..., None] * (col - sub_rgb)
        sub_a += a * (1.0 - sub_a)
    return rgb, alpha


def _splat(pts: np.ndarray, cols: np.ndarray, shape: tuple[int, int], width: float, max_samples: int = 1_200_000) -> tuple[np.ndarray, np.ndarray]:
    """Strands thinner than a pixel: accumulate their length per pixel, so dense thin hair adds up.

    Points are sampled along every segment about a pixel apart; a pixel's coverage is
    ``1 - 1 / (1 + x + x^2 / 2)`` with ``x`` = covered area (length x width), a
    saturating curve close to ``1 - exp(-x)`` in exact arithmetic. Colours are the
    length-weighted mean of the strands in the pixel.
    """
    h, w = shape
    n, kp1, _ = pts.shape
    seg = pts[:, 1:] - pts[:, :-1]
    seg_len = np.sqrt((seg * seg).sum(axis=2))
    total = float(seg_len.sum())
    spacing = max(0.9, total / max_samples)
    m = int(min(32, max(1, math.ceil(float(np.median(seg_len)) / spacing))))
    t = (np.arange(m, dtype=np.float64) + 0.5) / m
    # Samples: (strand, segment, step along the segment).
    px = pts[:, :-1, None, 0] + seg[:, :, None, 0] * t
    py = pts[:, :-1, None, 1] + seg[:, :, None, 1] * t
    x = np.floor(px + 0.5).astype(np.int64).ravel()
    y = np.floor(py + 0.5).astype(np.int64).ravel()
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = (y * w + x)[ok]
    wgt = np.broadcast_to((seg_len / m)[:, :, None], (n, kp1 - 1, m)).ravel()[ok]
    sid = np.broadcast_to(np.arange(n)[:, None, None], (n, kp1 - 1, m)).ravel()[ok]
    count = np.bincount(flat, weights=wgt, minlength=h * w)
    sums = np.stack([np.bincount(flat, weights=wgt * cols[sid, c], minlength=h * w) for c in range(3)])
    xcov = (count * width).astype(np.float32).reshape(h, w)
    alpha = 1.0 - 1.0 / (1.0 + xcov + xcov * xcov * np.float32(0.5))
    safe = np.maximum(count, 1e-12)
    col = (sums / safe).astype(np.float32).reshape(3, h, w).transpose(1, 2, 0)
    rgb = col * alpha[..., None]
    alpha = blur(alpha, 0.5)
    rgb = blur(rgb, 0.5)
    return np.ascontiguousarray(rgb), alpha


def follicle_dots(rng: np.random.Generator, framing: Framing, body: Body, kept: np.ndarray) -> np.ndarray:
    """Dark follicular openings (black dots) on hairless scalp or beard skin, as a darkening map 0..1."""
    mmpp = framing.mm_per_px
    bald = (body.hair_base >= 0.5) & (kept < 0.5)
    if mmpp > 0.2 or not bald.any():
        return np.zeros(framing.world_shape, dtype=np.float32)
    n = int(min(20000, bald.sum() * mmpp * mmpp * rng.uniform(0.2, 1.0)))
    flat = np.flatnonzero(bald.ravel())
    idx = flat[rng.integers(0, flat.size, size=n)]
    w = framing.world_shape[1]
    pts = np.stack([idx % w, idx // w], axis=1).astype(np.float64)
    dots = draw_discs(framing.world_shape, pts, np.full(n, 0.06 / mmpp), rng.uniform(0.2, 0.6, n))
    return dots
