"""Region-level hair drawn as strands, alopecic patches, and their change between visits.

Hair grows in the view's hair-bearing base region (scalp, eyebrows, beard, body hair)
minus alopecic patches. The patches come from a *loss field* ``G`` (coalescing round
patches plus irregular noise, and an ophiasis band on the scalp): hair is kept where
``G`` is below a cut level chosen so that a given share of the base region is lost.
Regrowth raises the cut (patches shrink along their own outlines) or lowers ``G`` in
islands (regrowth in patches); further loss does the opposite. The kept density ``rho``
is the cut blurred over about a millimetre (no islands or holes under ``_MIN_ISLAND_MM2``),
so hair thins out over a few millimetres at a patch edge, with short broken hairs there.

The hair label of a visit is exact: the kept region (``rho >= 0.5``) plus any skin
that drawn strands cover densely (long hair lying over a patch covers it). Strands
grow from a fixed set of roots shared by both visits, so persistent hair looks the
same; hair that is new at the follow-up is shorter, finer and lighter (vellus-like) or
white, as regrowth is.

Strands grow in follicular units of 1-3 hairs, in locks, along the body's flow field and
lying on its relief (foreshortened on slopes, hanging out of sight past the outline);
their colour darkens towards the root and carries Kajiya-Kay highlights. A head has one
hair colour: locks only darken (at their sides, in partings, where they overlap) or
lighten a little (at most ``_MAX_LIGHTER``), and one broad sheen band runs across the
hair mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .._filters import remove_small_components
from ._fields import blur, draw_discs, fractal, noise, power, smoothstep
from ._scene import Body, Framing, srgb_to_linear

#: Hair colours (sRGB) from black to blond, red and white.
HAIR_COLOURS: dict[str, tuple[float, float, float]] = {
    "black": (0.05, 0.045, 0.04),
    "dark_brown": (0.15, 0.10, 0.07),
    "brown": (0.30, 0.20, 0.13),
    "auburn": (0.42, 0.19, 0.09),
    "blond": (0.70, 0.56, 0.36),
    "light_blond": (0.84, 0.74, 0.54),
    "white": (0.86, 0.84, 0.78),
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
        # Styles: cropped, short, long (log-uniform lengths within each).
        lo, hi = ((2.0, 12.0), (12.0, 50.0), (50.0, 180.0))[int(rng.choice(3, p=[0.35, 0.45, 0.2]))]
        length = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        width = rng.uniform(0.05, 0.1)
        curl = rng.uniform(0.0, 0.3) if rng.random() < 0.8 else rng.uniform(0.4, 1.2)
        spread = rng.uniform(0.05, 0.25)
    elif kind == "face":
        density = rng.uniform(0.5, 1.5)
        length = rng.uniform(3.0, 12.0)
        width = rng.uniform(0.06, 0.12)
        curl = rng.uniform(0.15, 0.7)
        spread = rng.uniform(0.1, 0.3)
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
    len_cap = {"scalp": 180.0, "face": 14.0}.get(spec.kind, 28.0)

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
    scalp sometimes an ophiasis band along the margin. On the scalp the patches
    dominate: round-to-oval domes of 6-40 mm radius whose summed area is about that of
    the hair-bearing scalp, over weak broad noise, so a cut at any share of loss gives
    smooth, round-to-oval patches that coalesce (not the camouflage of a noise field);
    elsewhere (beard, brows, body hair) a few patches lie on stronger noise.

    Returns
    -------
    (H, W) float32 ndarray
    """
    h, w = framing.world_shape
    mmpp = framing.mm_per_px
    scalp = body.hair_kind == "scalp"
    g = np.float32(0.12 if scalp else 0.45) * fractal(rng, (h, w), rng.uniform(15, 45) / mmpp, octaves=3)
    # Fine irregularity: patch edges are a little ragged where patches coalesce.
    fine = rng.uniform(0.02, 0.05) if scalp else rng.uniform(0.08, 0.2)
    g += np.float32(fine) * fractal(rng, (h, w), max(2.0, rng.uniform(3.0, 8.0) / mmpp), octaves=2)
    base = body.hair_base >= 0.5
    ys, xs = np.nonzero(base)
    if len(xs):
        if scalp:
            # Patches until their discs add up to 0.6-1.5 x the hair-bearing area (at most 40).
            radii: list[float] = []
            goal = float(base.sum()) * mmpp * mmpp * rng.uniform(0.6, 1.5)
            while sum(math.pi * r * r for r in radii) < goal and len(radii) < 40:
                radii.append(float(math.exp(rng.uniform(math.log(6.0), math.log(40.0)))))
        else:
            radii = [float(rng.uniform(8, 45)) for _ in range(int(rng.integers(2, 9)))]
        for r_mm in radii:
            i = int(rng.integers(len(xs)))
            _add_patch(g, float(xs[i]), float(ys[i]), r_mm / mmpp, rng.uniform(0.65, 1.0) if scalp else 1.0, rng.uniform(0.0, math.pi), rng.uniform(0.6, 1.4))
    if scalp and rng.random() < 0.25:
        edge = body.hair_base.astype(np.float32)
        margin = 1.0 - np.clip(blur(edge, 20.0 / mmpp) * 1.6, 0.0, 1.0)
        g += np.float32(1.2) * margin
    return g.astype(np.float32)


def _add_patch(g: np.ndarray, cx: float, cy: float, r: float, aspect: float, angle: float, amp: float) -> None:
    """Add a round-to-oval dome ``amp (1 - d^2)^2`` (radius ``r`` px, minor/major ``aspect``) to ``g`` in place."""
    h, w = g.shape
    x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - np.float32(cx), yy - np.float32(cy)
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u, v = dx * c + dy * s, (dy * c - dx * s) * np.float32(1.0 / aspect)
    t = np.maximum(1.0 - (u * u + v * v) * np.float32(1.0 / (r * r)), 0.0)
    g[y0:y1, x0:x1] += np.float32(amp) * t * t


def cut_level(g: np.ndarray, base: np.ndarray, loss: float) -> float:
    """Cut level of ``g`` at which a share ``loss`` (0..1) of the base region is hairless."""
    vals = g[base >= 0.5]
    if loss <= 0.0 or vals.size == 0:
        return float(g.max()) + 1.0
    if loss >= 1.0:
        return float(g.min()) - 1.0
    return float(np.quantile(vals, 1.0 - loss))


#: Hair density falls off across a patch edge as a Gaussian-blurred step of this sigma (mm):
#: from full about 2.5 mm inside the edge to none about 2.5 mm outside it.
_EDGE_MM = 1.2
#: Hair islands in a bald patch, and bald holes in hair, smaller than this (mm^2) are not drawn.
_MIN_ISLAND_MM2 = 50.0


def kept_density(hair_base: np.ndarray, field: np.ndarray, level: float, mm_per_px: float) -> np.ndarray:
    """``rho``: the density of kept hair, 0..1, of a loss field cut at ``level``.

    Hair is kept where the field is below the level, except in islands (and bald holes)
    smaller than ``_MIN_ISLAND_MM2``, which are not drawn (no stray tufts in a bald patch).
    Across a patch edge the density falls off over a few millimetres (a Gaussian of
    ``_EDGE_MM``), as the thinning at the edge of an areata patch does, instead of a
    sharp mask edge; ``rho = 0.5`` lies on the cut (up to the edge's curvature).

    Returns
    -------
    (H, W) float32 ndarray
    """
    keep = (field < np.float32(level)).astype(np.uint8)
    min_px = _MIN_ISLAND_MM2 / (mm_per_px * mm_per_px)
    for value in (1, 0):
        part = keep == value
        if not part.any() or part.all():
            continue
        keep[part & ~remove_small_components(part, min_px)] = 1 - value
    rho = (hair_base * blur(keep.astype(np.float32), _EDGE_MM / mm_per_px)).astype(np.float32)
    # The ramp can cut a thin neck of hair; what it leaves of less than the smallest island
    # stays below the label's cut (thin hair, no labelled tuft).
    part = rho >= np.float32(0.5)
    if part.any():
        small = part & ~remove_small_components(part, min_px)
        rho[small] = np.minimum(rho[small], np.float32(0.49))
    return rho


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


#: Hairs per follicular unit (scalp and beard hair grows in units of 1-3 hairs).
_UNIT_SIZES = np.array([1, 2, 3])
_UNIT_P = np.array([0.3, 0.5, 0.2])
#: A strand is at most this many times lighter than the head's hair colour (before highlights).
_MAX_LIGHTER = 1.12
#: Total strand length (canvas px) drawn per photo at most.
_MAX_STRAND_PX = 4e6


def _roots(spec: HairSpec, framing: Framing, body: Body, max_strands: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray, float]:
    """Strand roots grouped in follicular units.

    Returns the generator of the per-strand draws, the roots ``(N, 2)`` (canvas px),
    the unit of every strand ``(N,)`` and the width boost that makes up for a cap on
    the number of strands.
    """
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
        return rng, np.zeros((0, 2)), np.zeros(0, dtype=np.int64), boost
    n_units = int(math.ceil(n / float((_UNIT_SIZES * _UNIT_P).sum())))
    sizes = rng.choice(_UNIT_SIZES, size=n_units, p=_UNIT_P)
    unit = np.repeat(np.arange(n_units), sizes)[:n]
    n = len(unit)
    idx = flat[rng.integers(0, flat.size, size=n_units)]
    centre = np.stack([idx % w, idx // w], axis=1).astype(np.float64) + rng.uniform(-0.5, 0.5, (n_units, 2))
    # Hairs of one unit leave the skin within about 0.15 mm of each other.
    pts = centre[unit] + rng.normal(0.0, 0.15 / mmpp, (n, 2))
    return rng, pts, unit, boost


def _sample(field: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Nearest-pixel values of a canvas field at points ``(..., 2)`` (clamped to the canvas)."""
    h, w = field.shape[:2]
    ix = np.clip(np.floor(pts[..., 0] + 0.5).astype(np.int64), 0, w - 1)
    iy = np.clip(np.floor(pts[..., 1] + 0.5).astype(np.int64), 0, h - 1)
    return field[iy, ix]


def _sheen(pts: np.ndarray, height: np.ndarray, wave: np.ndarray, light: np.ndarray, exponent: int) -> tuple[np.ndarray, np.ndarray]:
    """Kajiya-Kay highlights of strand segments: bright where the strand is across the half vector.

    A strand's tangent ``t`` has the canvas direction of the segment and a rise from
    the relief (hair lies on the head) plus ``wave`` (N, K), the lock's waviness; the specular term is
    ``sin(t, H)^exponent`` with ``H`` the half vector of the light and the viewer
    (along z). The secondary highlight (light that went through the hair, tinted by
    it) sits a little further along.

    Returns
    -------
    primary, secondary : (N, K) float64 ndarrays, 0..1
    """
    seg = pts[:, 1:] - pts[:, :-1]
    rise = _sample(height, pts[:, 1:]).astype(np.float64) - _sample(height, pts[:, :-1]).astype(np.float64)
    ln = np.sqrt((seg * seg).sum(axis=2)) + 1e-9
    tz = rise / ln + wave
    norm = np.sqrt(1.0 + tz * tz)
    hx, hy, hz = light[0], light[1], light[2] + 1.0
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    c = (seg[..., 0] / ln * hx + seg[..., 1] / ln * hy + tz * hz) / (norm * hn)
    s1 = np.maximum(1.0 - c * c, 0.0)
    c2 = c + 0.2
    s2 = np.maximum(1.0 - c2 * c2, 0.0)
    return power(s1.astype(np.float32), exponent // 2).astype(np.float64), power(s2.astype(np.float32), exponent // 4).astype(np.float64)


def _band(pts: np.ndarray, body: Body, light: np.ndarray, exponent: int) -> np.ndarray:
    """The broad sheen band of a head of hair at points ``(N, K, 2)``, 0..1.

    Kajiya-Kay of the combed direction (the body's flow field, rising with the relief
    along it) rather than of each strand: smooth over the head, so it forms one band
    across the hair mass (a ring round the crown on a dome) instead of glints.
    """
    f = _sample(body.flow, pts).astype(np.float64)
    a = _sample(body.height, pts + f).astype(np.float64)
    b = _sample(body.height, pts - f).astype(np.float64)
    tz = 0.5 * (a - b)
    hx, hy, hz = light[0], light[1], light[2] + 1.0
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    c = (f[..., 0] * hx + f[..., 1] * hy + tz * hz) / (np.sqrt(1.0 + tz * tz) * hn)
    s = np.maximum(1.0 - c * c, 0.0).astype(np.float32)
    return power(s, exponent).astype(np.float64)


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

    Strands grow from follicular units of 1-3 hairs along the body's flow field, in
    locks (neighbouring strands share direction, curl and cut length); each strand is
    darker at the root (shadowed by the hair above it) and a little lighter at the tip,
    locks differ in shade (at most ``_MAX_LIGHTER`` times lighter than the head's
    colour) and darken at their sides and where they overlap, Kajiya-Kay highlights run
    across locks where the strands lie across the light, and one broad sheen band
    crosses the hair mass. A few flyaways stray from the flow. Hair that is new at this
    visit (regrowth) is short, thin and light (vellus-like), or white.

    Parameters
    ----------
    spec : HairSpec
        Hair properties of the scene.
    framing : Framing
        Canvas geometry and scale.
    body : Body
        Base region, flow and relief.
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
    kept = kept_density(body.hair_base, field, state.level, mmpp)
    # Long hair at a wide framing: fewer, wider strands keep the drawn length bounded.
    cap = int(min(max_strands, max(1000, _MAX_STRAND_PX * mmpp / spec.length_mm)))
    rng, roots, unit, boost = _roots(spec, framing, body, cap)
    n = len(roots)
    n_units = int(unit.max()) + 1 if n else 0
    # Every per-strand draw happens for every strand, whatever the visit.
    u = rng.random(n)
    length = spec.length_mm * rng.lognormal(0.0, 0.3 * math.log(2.0), n) / mmpp
    lie = rng.uniform(0.6, 1.0, n)  # hairs leave the skin at an angle: projected length is shorter
    bright = rng.lognormal(-0.05, 0.4 * math.log(2.0), n)
    white = rng.random(n) < spec.grey
    jitter = rng.normal(0.0, spec.spread, n_units)[unit] + rng.normal(0.0, 0.3 * spec.spread, n)
    curl = spec.curl * rng.normal(1.0, 0.25, n)
    wobble = rng.normal(0.0, 0.03, (n, 12))
    stray = rng.random(n) < 0.015
    stray_turn = rng.normal(0.0, 1.2, n)
    white_new = rng.random(n)
    short_new = rng.uniform(0.2, 0.6, n)
    light = rng.normal(0.0, 0.35, 2)
    exponent = int(rng.choice([32, 64, 128]))
    shine = rng.uniform(0.05, 0.2)
    tip_light = rng.uniform(0.0, 0.12)
    band_gain = rng.uniform(0.1, 0.3)
    band_exp = int(rng.choice([4, 8, 16]))
    # Neighbouring hairs lie together (locks), curl together and are cut to similar lengths.
    lock_mm = rng.uniform(3.0, 10.0) * (1.0 if spec.length_mm > 15.0 else 0.5)
    clump = noise(rng, (h, w), max(2.0, lock_mm / mmpp))
    lock_curl = noise(rng, (h, w), max(2.0, 2.0 * lock_mm / mmpp))
    cut = noise(rng, (h, w), max(2.0, 40.0 / mmpp))
    # Locks catch the light differently: lighter and darker locks, deep shade between them.
    shade = noise(rng, (h, w), max(2.0, lock_mm / mmpp))
    # Locks are wavy: the strands of a lock rise and fall in step along their length, so
    # highlights form bands across the lock (a triangle wave of the arc length, phase per lock).
    wave_amp = rng.uniform(0.1, 0.5)
    wave_len = rng.uniform(8.0, 25.0) / mmpp
    wave_phase = noise(rng, (h, w), max(2.0, 2.0 * lock_mm / mmpp))
    # Strands differ in how much of the broad band they catch (it is made of single glints).
    catch = rng.uniform(0.2, 1.8, n)
    u_broken = rng.random(n)
    broken_mm = rng.uniform(1.0, 4.0, n)
    u_vellus = rng.random(n)
    vellus_mm = rng.uniform(0.5, 3.0, n)

    # Long hair lies in locks with partings and shines in bands; short hair stands apart and is duller.
    long_hair = min(1.0, max(0.0, (spec.length_mm - 10.0) / 30.0))
    wave_amp *= long_hair
    shine *= 0.3 + 0.7 * long_hair
    band_gain *= 0.25 + 0.75 * long_hair
    # Strands of a long lock lie parallel: little scatter of their own around the lock's direction.
    jitter = jitter * (1.0 - 0.7 * long_hair)
    wobble = wobble * (1.0 - 0.6 * long_hair)
    # Hair density falls off across a patch edge (rho ramps over a few mm): towards the
    # patch hairs thin out, and many of those left are short broken hairs (a few mm).
    rho = _sample(kept, roots).astype(np.float64) if n else np.zeros(0)
    active = u < rho
    new = np.zeros(n, dtype=bool)
    vellus = np.zeros(n, dtype=bool)
    if before_kept is not None and n:
        # Regrowth: hairs that grow now and did not then (the same roots and draws).
        new = active & ~(u < _sample(before_kept, roots).astype(np.float64))
        if new.any():
            # Where hair regrows, the patches that are still bald carry sparse vellus
            # regrowth too: fine, short (0.5-3 mm) light hairs, too sparse to be labelled.
            base_ok = _sample(body.hair_base, roots) >= 0.5
            vellus = ~active & base_ok & (u_vellus < 0.3 * (1.0 - rho))
            active = active | vellus
            new = new | vellus
    broken = u_broken < 0.8 * (1.0 - smoothstep((rho - 0.15) * (1.0 / 0.8)))
    length = length * np.clip(1.0 + 0.35 * _sample(cut, roots), 0.4, 1.6) if n else length
    length = np.where(broken & ~new, np.minimum(length, broken_mm / mmpp), length)
    length = np.where(new, length * short_new, length)
    length = np.where(vellus, vellus_mm / mmpp, length) * lie
    length = np.where(stray, length * 1.3, length)
    white = np.where(new, white_new < state.regrowth_white, white)

    rgb = np.zeros((h, w, 3), dtype=np.float32)
    alpha = np.zeros((h, w), dtype=np.float32)
    sel = np.flatnonzero(active)
    if sel.size:
        base_col = srgb_to_linear(HAIR_COLOURS[spec.colour_name]).astype(np.float64)
        if colour_texture is not None:
            cols = _sample(colour_texture, roots[sel]).astype(np.float64)
        else:
            cols = base_col[None, :] * bright[sel, None]
        # One colour per head: locks differ in shade (darker far more than lighter), darken
        # towards their sides and deeply in the partings between them (where the lock field
        # changes sign). Short hair stands apart: only long hair forms locks with partings.
        depth = 0.75 * long_hair
        c_abs = np.abs(_sample(clump, roots[sel]).astype(np.float64))
        side = 0.1 + 0.2 * long_hair
        gap = (1.0 - depth + depth * smoothstep(c_abs * (1.0 / 0.25))) * (1.0 - side + side * smoothstep(c_abs * (1.0 / 0.7)))
        sh = _sample(shade, roots[sel]).astype(np.float64)
        lock_shade = np.clip(1.0 + np.where(sh > 0.0, 0.08, 0.35 + 0.55 * long_hair) * sh, 0.3, _MAX_LIGHTER)
        cols = cols * (lock_shade * gap)[:, None]
        cols = np.where(white[sel, None], _WHITE[None, :] * np.clip(bright[sel, None], 0.75, 1.1), cols)
        # Regrowth is vellus-like: fine, short and lighter than the terminal hair.
        cols = np.where(new[sel, None] & ~white[sel, None], cols + 0.5 * (_WHITE[None, :] * 0.8 - cols), cols)
        pts = _grow(roots[sel], length[sel], body, jitter[sel], curl[sel], wobble[sel], stray[sel], stray_turn[sel], clump, lock_curl)
        k = pts.shape[1] - 1
        # Along the strand: shadowed roots (more so under long hair), a little lighter tips.
        s = (np.arange(k, dtype=np.float64) + 0.5) / k
        root_dark = 0.8 - 0.4 * long_hair
        along = root_dark + (1.0 - root_dark) * np.minimum(s * 2.0, 1.0) + tip_light * s * s
        seg_cols = cols[:, None, :] * along[None, :, None]
        # Where a strand has left its lock's side of a parting it lies over (or under) the
        # neighbouring lock: locks darken where they overlap.
        mid = 0.5 * (pts[:, 1:] + pts[:, :-1])
        own = _sample(clump, roots[sel]) >= 0.0
        crossed = (_sample(clump, mid) >= 0.0) != own[:, None]
        seg_cols = seg_cols * np.where(crossed, 1.0 - 0.25 * long_hair - 0.1, 1.0)[..., None]
        if colour_texture is None:
            # No strand is more than _MAX_LIGHTER times the head's colour (before the sheen):
            # no orange or bright streaks in a head of hair.
            # White (greying) and regrown strands keep their own colour.
            terminal = ~(white[sel] | new[sel])
            cap = np.where(terminal[:, None, None], _MAX_LIGHTER * base_col[None, None, :], np.inf)
            seg_cols = np.minimum(seg_cols, cap)
        lx, ly = float(light[0]), float(light[1])
        arc = (np.arange(k, dtype=np.float64) + 0.5)[None, :] * (length[sel] / k)[:, None]
        x = arc / wave_len + _sample(wave_phase, roots[sel]).astype(np.float64)[:, None]
        wave = wave_amp * (4.0 * np.abs(x - np.floor(x + 0.5)) - 1.0)
        light3 = np.array([lx, ly, math.sqrt(max(1.0 - lx * lx - ly * ly, 0.2))])
        prim, sec = _sheen(pts, body.height, wave, light3, exponent)
        seg_cols = seg_cols + shine * (prim[..., None] * 0.9 + sec[..., None] * 1.5 * cols[:, None, :])
        # One broad highlight band across the hair mass: Kajiya-Kay of the combed direction
        # (the flow field with the relief's rise, smooth over the head) with a low exponent.
        band = _band(mid, body, light3, band_exp) * catch[sel, None]
        seg_cols = seg_cols + band_gain * band[..., None] * (0.55 * _WHITE[None, None, :] + 0.45 * np.maximum(cols[:, None, :], 0.02))
        seg_cols = np.clip(seg_cols, 0.0, 1.0)
        width_px = spec.width_mm / mmpp * math.sqrt(boost)
        opacity = 0.75 if spec.colour_name in ("blond", "light_blond") else 0.92
        fine = new[sel]
        rgb, alpha = _draw(pts[~fine], seg_cols[~fine], (h, w), width_px, opacity)
        if fine.any():
            vrgb, valpha = _splat(pts[fine], seg_cols[fine], (h, w), min(width_px * 0.45, 0.9) * 0.7)
            rgb = vrgb + rgb * (1.0 - valpha)[..., None]
            alpha = valpha + alpha * (1.0 - valpha)
        if long_hair > 0.0:
            # Long hair is many layers deep: under the drawn strands lies a dark under-layer of
            # shadowed hair (lock-shaded), so the scalp does not show through a full head of it.
            # It lies under the hair where it lies, not only where it grows: hair combed over
            # a patch's edge (strands covering over 60 %) carries its depth with it.
            lying = np.clip(blur(alpha, 1.5 / mmpp) * np.float32(0.5 / 0.6), 0.0, 1.0)
            under = _under_layer(np.maximum(kept, lying), alpha, long_hair, 1.5 / mmpp, 4.0 / mmpp)
            if under is not None:
                tone = cols[~fine].mean(axis=0) if (~fine).any() else cols.mean(axis=0)
                lum = np.float32(0.3) * np.clip(1.0 + np.float32(0.35) * shade, 0.4, 1.4)
                col = (lum[..., None] * tone.astype(np.float32)[None, None, :]) * under[..., None]
                rgb = rgb + col * (1.0 - alpha)[..., None]
                alpha = alpha + under * (1.0 - alpha)
    # The label: kept region plus skin that strands cover densely.
    spacing_px = 1.0 / math.sqrt(max(spec.density, 1e-3)) / mmpp
    ksz = int(min(31, max(3, 2 * int(spacing_px) + 1)))
    cover = cv2.blur(alpha, (ksz, ksz), borderType=cv2.BORDER_REFLECT)
    label = np.maximum(kept, cover * np.float32(0.5 / 0.3))
    return HairLayers(rgb, alpha, label.astype(np.float32), kept.astype(np.float32))


def _under_layer(kept: np.ndarray, strands: np.ndarray, long_hair: float, sigma_px: float, fade_px: float) -> np.ndarray | None:
    """Coverage 0..1 of long hair's dark under-layer.

    It lies where hair is kept and the drawn strands are (their coverage blurred over
    ``sigma_px``, full from 0.5), up to 0.98 x how long the hair is, so a full head of
    long hair hides the scalp while thin or parted hair still shows it. Towards a
    hairline (the edge of the kept region: the frontal hairline, a bald patch) it fades
    out over ``fade_px`` (about 4 mm), so the hair thins out there instead of ending in
    a hard dark edge.
    """
    inside = (kept >= np.float32(0.5)).astype(np.float32)
    if not inside.any():
        return None
    # A blur of the region with sigma fade/2 is 0.5 on its edge and ~0.98 at fade inside.
    fade = smoothstep((blur(inside, 0.5 * fade_px) - np.float32(0.5)) * np.float32(2.1))
    dense = np.clip(blur(strands, sigma_px) * np.float32(2.0), 0.0, 1.0)
    return (fade * dense * np.float32(0.98 * long_hair)).astype(np.float32)


def _grow(
    roots: np.ndarray,
    length: np.ndarray,
    body: Body,
    jitter: np.ndarray,
    curl: np.ndarray,
    wobble: np.ndarray,
    stray: np.ndarray,
    stray_turn: np.ndarray,
    clump: np.ndarray,
    lock_curl: np.ndarray,
) -> np.ndarray:
    """Strand polylines ``(N, K + 1, 2)`` grown segment by segment along the flow (exact arithmetic only).

    Every segment turns towards the flow where it is (so long hair follows the combing
    direction around the head), by its lock's offset and curl, and by a little of its own.
    Hair lies on the body: a step along a slope of the relief is foreshortened in the
    picture, so strands wrap around a rounded head instead of sticking out of its
    outline, and a strand that has fallen over the outline hangs down out of sight.
    """
    flow = body.flow
    n = len(roots)
    # Segments about 10 px long (5 to 32 per strand), so curves stay round and strands stop at outlines.
    k = int(min(32, max(5, math.ceil(float(np.median(length)) / 10.0)))) if n else 5
    d = _sample(flow, roots).astype(np.float64)
    perp = np.stack([-d[:, 1], d[:, 0]], axis=1)
    offset = jitter * 0.5 + 0.25 * _sample(clump, roots).astype(np.float64)
    offset = np.where(stray, offset + stray_turn, offset)
    d = d + offset[:, None] * perp
    d /= np.sqrt((d * d).sum(axis=1, keepdims=True)) + 1e-12
    bend = curl * (0.5 + 1.0 * _sample(lock_curl, roots).astype(np.float64)) * np.where(stray, 3.0, 1.0)
    step = (length / k)[:, None]
    pts = np.empty((n, k + 1, 2))
    pts[:, 0] = roots
    for j in range(k):
        f = _sample(flow, pts[:, j]).astype(np.float64)
        fperp = np.stack([-f[:, 1], f[:, 0]], axis=1)
        target = f + offset[:, None] * fperp
        d = d + 0.35 * (target - d) * (~stray)[:, None]
        perp = np.stack([-d[:, 1], d[:, 0]], axis=1)
        d = d + (bend / k + wobble[:, j % wobble.shape[1]])[:, None] * perp
        d /= np.sqrt((d * d).sum(axis=1, keepdims=True)) + 1e-12
        # Rise of the relief per pixel along d (central difference over one pixel each way).
        slope = 0.5 * (_sample(body.height, pts[:, j] + d).astype(np.float64) - _sample(body.height, pts[:, j] - d))
        fore = 1.0 / np.sqrt(1.0 + slope * slope) * (_sample(body.coverage, pts[:, j]) >= 0.5)
        pts[:, j + 1] = pts[:, j] + d * (step * fore[:, None])
    return pts


def _draw(pts: np.ndarray, seg_cols: np.ndarray, shape: tuple[int, int], width_px: float, opacity: float) -> tuple[np.ndarray, np.ndarray]:
    """Strands with a colour per segment: antialiased lines when at least a pixel wide, else accumulated."""
    if len(pts) == 0:
        return np.zeros(shape + (3,), dtype=np.float32), np.zeros(shape, dtype=np.float32)
    if width_px >= 1.0:
        return _draw_opaque(pts, seg_cols, shape, int(round(width_px)), opacity)
    return _splat(pts, seg_cols, shape, width_px * opacity)


def _draw_opaque(pts: np.ndarray, seg_cols: np.ndarray, shape: tuple[int, int], thick: int, opacity: float) -> tuple[np.ndarray, np.ndarray]:
    """Strands at least a pixel wide: antialiased segments in colour groups, darkest first.

    Segments are grouped by luminance (eight groups); darker groups are drawn first, so
    shadowed roots lie under the lit parts of the hair.
    """
    h, w = shape
    rgb = np.zeros((h, w, 3), dtype=np.float32)
    alpha = np.zeros((h, w), dtype=np.float32)
    n, k = seg_cols.shape[:2]
    segs = np.stack([pts[:, :-1], pts[:, 1:]], axis=2).reshape(n * k, 2, 2)
    cols = seg_cols.reshape(n * k, 3)
    # Segments of strands that hang out of sight have no length: drawing them would leave dots.
    d = segs[:, 1] - segs[:, 0]
    keep = (d * d).sum(axis=1) > 0.01
    segs, cols = segs[keep], cols[keep]
    if len(segs) == 0:
        return rgb, alpha
    lum = cols[:, 0] * 0.2126 + cols[:, 1] * 0.7152 + cols[:, 2] * 0.0722
    edges = np.quantile(lum, np.arange(1, 8) / 8.0) if len(cols) > 80 else np.array([])
    group = np.searchsorted(edges, lum) if edges.size else np.zeros(len(cols), dtype=np.int64)
    int_pts = np.round(segs * 8.0).astype(np.int32)
    lo = np.clip(np.floor(segs.reshape(-1, 2).min(axis=0)).astype(int) - thick - 2, 0, [w, h])
    hi = np.clip(np.ceil(segs.reshape(-1, 2).max(axis=0)).astype(int) + thick + 3, 0, [w, h])
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


def _splat(pts: np.ndarray, seg_cols: np.ndarray, shape: tuple[int, int], width: float, max_samples: int = 3_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Strands thinner than a pixel: accumulate their length per pixel, so dense thin hair adds up.

    Points are sampled along every segment about a pixel apart; a pixel's coverage is
    ``1 - 1 / (1 + x + x^2 / 2)`` with ``x`` = covered area (length x width), a
    saturating curve close to ``1 - exp(-x)`` in exact arithmetic. Colours are the
    length-weighted mean of the segments in the pixel.
    """
    h, w = shape
    start = pts[:, :-1].reshape(-1, 2)
    seg = (pts[:, 1:] - pts[:, :-1]).reshape(-1, 2)
    seg_len = np.sqrt((seg * seg).sum(axis=1))
    # Segments of strands that hang out of sight have no length and add nothing.
    keep = seg_len > 1e-3
    start, seg, seg_len, seg_cols = start[keep], seg[keep], seg_len[keep], seg_cols.reshape(-1, 3)[keep]
    if seg_len.size == 0:
        return np.zeros((h, w, 3), dtype=np.float32), np.zeros((h, w), dtype=np.float32)
    total = float(seg_len.sum())
    spacing = max(0.9, total / max_samples)
    m = int(min(32, max(1, math.ceil(float(np.median(seg_len)) / spacing))))
    t = (np.arange(m, dtype=np.float64) + 0.5) / m
    # Samples: (segment, step along the segment).
    x = np.floor(start[:, 0, None] + seg[:, 0, None] * t + 0.5).astype(np.int64).ravel()
    y = np.floor(start[:, 1, None] + seg[:, 1, None] * t + 0.5).astype(np.int64).ravel()
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = (y * w + x)[ok]
    del x, y
    shape_s = (seg_len.size, m)
    count = np.bincount(flat, weights=np.broadcast_to((seg_len / m)[:, None], shape_s).ravel()[ok], minlength=h * w)
    sums = np.stack([np.bincount(flat, weights=np.broadcast_to((seg_len / m * seg_cols[:, c])[:, None], shape_s).ravel()[ok], minlength=h * w) for c in range(3)])
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
