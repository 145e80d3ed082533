"""Phantom photos and before/after pairs with exactly known truth.

:func:`render_photo` draws one photo and its label map; :func:`render_pair` draws the
month-0 and month-10 photos of one view with a known camera change, lighting change
and disease change, and the truth: the after->before homography (plus a dense
displacement where the body moved non-rigidly) and the true metrics in the shape of
result.json's ``metrics``.

Same seed, same options -> byte-identical arrays: every random draw comes from a
:class:`numpy.random.Generator` seeded from the seed, streams are split per purpose
(scene, cameras, lighting, sensor noise, disease change), and ``render_photo(seed)``
is exactly ``render_pair(seed).before`` with its labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np

from ..errors import UsageError
from ..labels import HAIR, LESION, SKIN
from ..quantify import change_metrics, default_min_lesion_area_px, photo_metrics
from ..registration import coverage_mask, map_points, warp_to_before
from ._camera import (
    Camera,
    Deformation,
    Lighting,
    Sensor,
    develop,
    mat3_inv,
    mat3_mul,
    photo_to_world,
    remap,
    sample_camera,
    sample_deformation,
    sample_lighting,
    sample_sensor,
    shade,
)
from ._fields import blur
from ._hair import HairLayers, HairSpec, HairState, cut_level, ensure_visible, follicle_dots, loss_field, render_hair, sample_hair
from ._scene import BACKGROUNDS, VIEWS, Body, Framing, build_background, build_body, choose_framing, clothing_occluder, ruler
from ._skin import LesionSpec, Skin, apply_lesions, build_skin, change_lesion, render_lesions, sample_lesions
from ._portable import opencv_baseline
from .textures import TextureBank

logger = logging.getLogger(__name__)

#: Bumped whenever the same seed would draw different pixels.
#: 2: OpenCV kept on its baseline code while drawing (same bytes on any x86 CPU).
#: 3: hair drawn from follicular units along the flow, skull outline; anatomical trunk and limbs, key + fill light.
#: 4: limb, trunk and face framing, hands, chin/occiput above the neck, skull relief, oily bald scalp, curved cast shadows.
#: 5: one hair colour per head with a sheen band, under-layer and parting; open eyes; torso per side,
#:    occlusion without a dark rim; legs with knee, calf, ankle and foot.
#: 6: scalp alopecia as round coalescing patches with hair thinning out over a few mm at their
#:    edges (broken hairs, no small tufts), long hair's under-layer carried over patch edges.
GENERATOR_VERSION = 6

#: Canvas size relative to the photo: room for the cameras to move.
_MARGIN = 1.18

_STREAMS = ("scene", "skin", "lesions", "hair", "cam_b", "light_b", "sensor_b", "noise_b", "change", "cam_a", "light_a", "sensor_a", "noise_a", "deform", "texture")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFF, 0x1D6E]).spawn(len(_STREAMS))
    return {name: np.random.Generator(np.random.PCG64(ch)) for name, ch in zip(_STREAMS, children)}


@dataclass(frozen=True)
class SynthOptions:
    """What kinds of phantoms to draw.

    Attributes
    ----------
    views : tuple of str
        Body views to choose from (see :data:`VIEWS`).
    fitzpatrick : tuple of int
        Skin types to choose from, 1..6.
    backgrounds : tuple of str
        Backgrounds to choose from (see :data:`BACKGROUNDS`).
    close_up : float
        Probability of a close-up (skin fills the frame) instead of a whole-region shot.
    lesions : (int, int)
        Least and most eczema patches per scene.
    lesion_contrast : (float, float)
        Range of lesion contrast, 0 (invisible) .. 1 (obvious).
    hair_loss : (float, float)
        Range of the share of the hair-bearing region that is bald at month 0.
    distractors : float
        Rate of non-lesion distractors (moles, freckles, vessels, tattoos, pen marks,
        rulers), 0 disables them.
    artefacts : float
        Strength of blur, noise and JPEG compression, 0 = clean photos.
    camera_change : float
        Scales how far the follow-up camera moves (0 = same camera).
    lighting_change : float
        Scales how much the follow-up lighting differs.
    nonrigid : float
        Probability that the body deforms non-rigidly between the visits.
    max_strands : int
        Cap on hair strands per photo (speed).
    textures : TextureBank or None
        Real skin and hair patches to draw on (see :func:`load_texture_bank`).
    """

    views: tuple[str, ...] = VIEWS
    fitzpatrick: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    backgrounds: tuple[str, ...] = BACKGROUNDS
    close_up: float = 0.35
    lesions: tuple[int, int] = (0, 7)
    lesion_contrast: tuple[float, float] = (0.12, 1.0)
    hair_loss: tuple[float, float] = (0.0, 1.0)
    distractors: float = 1.0
    artefacts: float = 1.0
    camera_change: float = 1.0
    lighting_change: float = 1.0
    nonrigid: float = 0.25
    max_strands: int = 60000
    textures: TextureBank | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        def bad(msg: str) -> UsageError:
            return UsageError(f"synth options: {msg}")

        if not self.views or any(v not in VIEWS for v in self.views):
            raise bad(f"views must be among {', '.join(VIEWS)}, got {self.views}")
        if not self.fitzpatrick or any(int(f) not in range(1, 7) for f in self.fitzpatrick):
            raise bad(f"fitzpatrick types must be 1..6, got {self.fitzpatrick}")
        if not self.backgrounds or any(b not in BACKGROUNDS for b in self.backgrounds):
            raise bad(f"backgrounds must be among {', '.join(BACKGROUNDS)}, got {self.backgrounds}")
        lo, hi = self.lesions
        if not (0 <= lo <= hi <= 40):
            raise bad(f"lesions must be (min, max) with 0 <= min <= max <= 40, got {self.lesions}")
        for name in ("lesion_contrast", "hair_loss"):
            a, b = getattr(self, name)
            if not (0.0 <= a <= b <= 1.0):
                raise bad(f"{name} must be (lo, hi) with 0 <= lo <= hi <= 1, got {(a, b)}")
        for name in ("close_up", "nonrigid"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(f"{name} is a probability 0..1, got {getattr(self, name)}")
        for name in ("distractors", "artefacts", "camera_change", "lighting_change"):
            if not 0.0 <= getattr(self, name) <= 3.0:
                raise bad(f"{name} must be 0..3, got {getattr(self, name)}")
        if self.max_strands < 0:
            raise bad(f"max_strands must be >= 0, got {self.max_strands}")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "textures"}
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        d["textures"] = None if self.textures is None else self.textures.to_dict()
        return d


@dataclass(frozen=True)
class DiseaseChange:
    """How the disease changes from month 0 to month 10.

    Attributes
    ----------
    resolve : float
        Share of lesions that resolve.
    shrink : float
        How much the remaining lesions shrink (cut-level rise, about 0..0.6); negative grows them.
    fade : float
        Contrast multiplier of the remaining lesions.
    new_lesions : int
        Lesions that appear.
    residue : float
        Faint pigment left where lesions resolved (below the label threshold), 0..1.
    hair_loss_after : float or None
        Share of the hair-bearing region bald at month 10; None keeps month 0's cut.
    regrowth_islands : int
        Islands of regrowth inside bald areas.
    new_loss_patches : int
        New alopecic patches in hair.
    regrowth_white : float
        Share of regrown strands that grow in white.
    """

    resolve: float = 0.0
    shrink: float = 0.0
    fade: float = 1.0
    new_lesions: int = 0
    residue: float = 0.0
    hair_loss_after: float | None = None
    regrowth_islands: int = 0
    new_loss_patches: int = 0
    regrowth_white: float = 0.0

    @property
    def is_none(self) -> bool:
        """True when nothing changes."""
        return self == DiseaseChange()

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def sample_change(rng: np.random.Generator, hair_loss_before: float) -> DiseaseChange:
    """A random disease course: mostly improvement, sometimes worsening or mixed."""
    kind = rng.choice(["improve", "worsen", "mixed"], p=[0.6, 0.2, 0.2])
    if kind == "improve":
        return DiseaseChange(
            resolve=float(rng.uniform(0.2, 0.9)),
            shrink=float(rng.uniform(0.05, 0.5)),
            fade=float(rng.uniform(0.35, 1.0)),
            new_lesions=int(rng.random() < 0.35),
            residue=float(rng.uniform(0.0, 0.8)),
            hair_loss_after=float(hair_loss_before * rng.uniform(0.0, 0.8)),
            regrowth_islands=int(rng.integers(0, 5)),
            regrowth_white=float(rng.uniform(0.0, 0.7)),
        )
    if kind == "worsen":
        return DiseaseChange(
            resolve=float(rng.uniform(0.0, 0.2)),
            shrink=float(rng.uniform(-0.35, 0.0)),
            fade=float(rng.uniform(1.0, 1.3)),
            new_lesions=int(rng.integers(1, 5)),
            hair_loss_after=float(min(1.0, hair_loss_before + rng.uniform(0.0, 0.5))),
            new_loss_patches=int(rng.integers(0, 4)),
        )
    return DiseaseChange(
        resolve=float(rng.uniform(0.1, 0.6)),
        shrink=float(rng.uniform(-0.2, 0.3)),
        fade=float(rng.uniform(0.6, 1.2)),
        new_lesions=int(rng.integers(0, 3)),
        residue=float(rng.uniform(0.0, 0.6)),
        hair_loss_after=float(np.clip(hair_loss_before + rng.uniform(-0.4, 0.3), 0.0, 1.0)),
        regrowth_islands=int(rng.integers(0, 3)),
        new_loss_patches=int(rng.integers(0, 2)),
        regrowth_white=float(rng.uniform(0.0, 0.5)),
    )


@dataclass(frozen=True)
class _Disease:
    lesions: tuple[LesionSpec, ...]
    hair: HairState


@dataclass(frozen=True)
class _Scene:
    photo_shape: tuple[int, int]
    framing: Framing
    fitzpatrick: int
    background_kind: str
    body: Body
    skin: Skin
    background: np.ndarray
    skin_cover: np.ndarray
    body_mask: np.ndarray
    hair_spec: HairSpec
    loss: np.ndarray
    hair_texture: np.ndarray | None
    disease: _Disease
    hair_loss_before: float
    extras: tuple[str, ...]
    #: Coverage of objects lying on the body (a ruler), which hide its hair too.
    occluder: np.ndarray | None = None

    def info(self) -> dict[str, Any]:
        return {
            **self.framing.to_dict(),
            "fitzpatrick": self.fitzpatrick,
            "male": self.body.male,
            "background": self.background_kind,
            "distractors": list(self.skin.distractors) + list(self.extras),
            "hair": self.hair_spec.to_dict(),
            "hair_loss_month0": round(self.hair_loss_before, 4),
            "lesions_month0": [s.to_dict() for s in self.disease.lesions],
        }


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise UsageError(f"size must be (width, height), got {size!r}") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise UsageError(f"phantom size must be 64..8192 px on each side, got {w}x{h}")
    return h, w


def _pick(rng: np.random.Generator, items: tuple[Any, ...]) -> Any:
    return items[int(rng.integers(len(items)))]


def _build_scene(seed: int, photo_shape: tuple[int, int], opts: SynthOptions, rs: dict[str, np.random.Generator]) -> _Scene:
    r = rs["scene"]
    view = _pick(r, opts.views)
    fitz = int(_pick(r, tuple(opts.fitzpatrick)))
    close = bool(r.random() < opts.close_up)
    framing = choose_framing(r, view, photo_shape, close, _MARGIN)
    body = build_body(r, framing, fitz)
    bg_kind = _pick(r, opts.backgrounds)
    background = build_background(r, framing, body, bg_kind)
    if float(body.clothing.max()) > 0.0:
        cloth = clothing_occluder(r, framing)
        background = background + body.clothing[..., None] * (cloth - background)
    if body.paint is not None:  # detail that is neither skin nor hair (open eyes)
        background = body.paint(background)
    skin_cover = body.coverage
    extras: list[str] = []
    occluder = None
    if r.random() < 0.2 * opts.distractors:
        rc, rcol = ruler(r, framing)
        background = background + rc[..., None] * (rcol - background)
        skin_cover = skin_cover * (1.0 - rc)
        occluder = rc.astype(np.float32)
        extras.append("ruler")

    rt = rs["texture"]
    skin_tex = hair_tex = None
    if opts.textures is not None:
        skin_tex = opts.textures.skin_detail(rt, framing.world_shape)
        hair_tex = opts.textures.hair_colours(rt, framing.world_shape)
    skin = build_skin(rs["skin"], framing, body, fitz, distractor_rate=opts.distractors, texture=skin_tex)

    rl = rs["lesions"]
    n_les = int(rl.integers(opts.lesions[0], opts.lesions[1] + 1))
    lesions = sample_lesions(rl, framing, body, fitz, n_les, opts.lesion_contrast, photo_shape)

    rh = rs["hair"]
    hair_spec = ensure_visible(sample_hair(rh, body, fitz), skin.tone)
    g = loss_field(rh, framing, body)
    lo, hi = opts.hair_loss
    # Mass at both ends: total loss and full hair are common in practice.
    f = float(np.clip(rh.uniform(lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)), lo, hi))
    level = cut_level(g, body.hair_base, f)
    disease = _Disease(tuple(lesions), HairState(level))
    # Relief shades the skin fully and clothing a little; the background is flat.
    body_mask = np.maximum(skin_cover, body.clothing * np.float32(0.3)).astype(np.float32)
    return _Scene(photo_shape, framing, fitz, bg_kind, body, skin, background, skin_cover.astype(np.float32), body_mask, hair_spec, g, hair_tex, disease, f, tuple(extras), occluder)


@dataclass(frozen=True)
class _WorldVisit:
    colour: np.ndarray
    geo: np.ndarray
    lab: np.ndarray
    kept: np.ndarray


def _visit(scene: _Scene, disease: _Disease, opts: SynthOptions, before_kept: np.ndarray | None = None) -> _WorldVisit:
    """Draw one visit's disease on the canvas and composite everything the camera sees."""
    fr, fitz = scene.framing, scene.fitzpatrick
    les = render_lesions(list(disease.lesions), fr, fitz)
    albedo = apply_lesions(scene.skin.albedo, les, scene.skin.tone, fitz)
    hair: HairLayers = render_hair(
        scene.hair_spec,
        fr,
        scene.body,
        scene.loss,
        disease.hair,
        before_kept,
        max_strands=opts.max_strands,
        colour_texture=scene.hair_texture,
    )
    if scene.body.hair_kind in ("scalp", "face"):
        dots = follicle_dots(np.random.default_rng(scene.hair_spec.seed + 1), fr, scene.body, hair.kept)
        if dots.any():
            albedo *= (1.0 - np.float32(0.6) * dots)[..., None]
    hair_alpha, hair_rgb = hair.alpha, hair.rgb
    if scene.occluder is not None and hair_alpha.any():
        # A ruler lies on top of the hair as well as the skin.
        keep = np.float32(1.0) - scene.occluder
        hair_alpha = hair_alpha * keep
        hair_rgb = hair_rgb * keep[..., None]
    has_hair = bool(hair_alpha.any())
    if has_hair:
        # Strands shade the skin right under them.
        albedo *= (1.0 - np.float32(0.45) * blur(hair_alpha, 1.0))[..., None]
    cov = scene.skin_cover
    colour = albedo - scene.background
    colour *= cov[..., None]
    colour += scene.background
    if has_hair:
        colour *= (1.0 - hair_alpha)[..., None]
        colour += hair_rgb
    np.clip(colour, 0.0, 1.0, out=colour)
    # Surface normals from the relief (central differences, exact arithmetic).
    height = scene.body.height + scene.skin.micro
    if les.box is not None:
        height += les.relief
    geo = np.empty(height.shape + (4,), dtype=np.float32)
    gx = np.zeros_like(height)
    gy = np.zeros_like(height)
    np.subtract(height[:, 2:], height[:, :-2], out=gx[:, 1:-1])
    np.subtract(height[2:, :], height[:-2, :], out=gy[1:-1, :])
    gx *= np.float32(0.5)
    gy *= np.float32(0.5)
    inv = np.float32(1.0) / np.sqrt(gx * gx + gy * gy + np.float32(1.0))
    inv *= scene.body_mask
    geo[..., 0] = -gx * inv
    geo[..., 1] = -gy * inv
    oil = scene.skin.oil * cov
    oil *= np.float32(scene.body.oil_gain)
    if les.box is not None:
        oil *= 1.0 - les.dryness
    if has_hair:
        oil *= 1.0 - hair_alpha
    geo[..., 2] = oil
    geo[..., 3] = cov
    lab = np.empty(height.shape + (2,), dtype=np.float32)
    lab[..., 0] = les.opacity
    lab[..., 1] = hair.label
    return _WorldVisit(colour, geo, lab, hair.kept)


def _photograph(
    visit: _WorldVisit,
    cam: Camera,
    photo_shape: tuple[int, int],
    lighting: Lighting,
    sensor: Sensor,
    noise_rng: np.random.Generator,
    deformation: Deformation | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    maps = photo_to_world(cam, photo_shape, deformation)
    colour = remap(visit.colour, maps)
    geo = remap(visit.geo, maps)
    lab = remap(visit.lab, maps)
    lit = shade(colour, geo[..., :2], geo[..., 2], lighting, cam.rotation)
    image = develop(lit, lighting, sensor, noise_rng)
    labels = np.zeros(photo_shape, dtype=np.uint8)
    body = geo[..., 3] >= 0.5
    labels[body] = SKIN
    labels[body & (lab[..., 0] >= 0.5)] = LESION
    labels[body & (lab[..., 1] >= 0.5)] = HAIR
    return image, labels


def _before_camera(rs: dict[str, np.random.Generator], world_shape: tuple[int, int], photo_shape: tuple[int, int]) -> Camera:
    return sample_camera(rs["cam_b"], world_shape, photo_shape, rotation=6.0, scale=(0.92, 1.1), shift=0.03, tilt=0.03)


@opencv_baseline()  # same bytes on any x86-64 CPU (see _portable)
def render_photo(
    seed: int,
    *,
    size: tuple[int, int] = (512, 512),
    options: SynthOptions | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom photo and its exact label map.

    Parameters
    ----------
    seed : int
        Seed; the same seed and options give byte-identical output. The photo is the
        month-0 photo of ``render_pair(seed, size=size, options=options)``.
    size : (width, height)
        Photo size in pixels (64..8192).
    options : SynthOptions, optional
        What kinds of phantoms to draw.

    Returns
    -------
    image : (H, W, 3) uint8 ndarray
        RGB photo.
    labels : (H, W) uint8 ndarray
        Label map (0 background, 1 skin, 2 lesion, 3 hair).

    Raises
    ------
    UsageError
        A bad size or bad options.
    """
    opts = options or SynthOptions()
    photo_shape = _check_size(size)
    rs = _streams(seed)
    scene = _build_scene(seed, photo_shape, opts, rs)
    visit = _visit(scene, scene.disease, opts)
    cam = _before_camera(rs, scene.framing.world_shape, photo_shape)
    light = sample_lighting(rs["light_b"])
    sensor = sample_sensor(rs["sensor_b"], photo_shape, opts.artefacts)
    return _photograph(visit, cam, photo_shape, light, sensor, rs["noise_b"])


@dataclass(frozen=True)
class PhantomPair:
    """A month-0 / month-10 phantom pair and its truth.

    Attributes
    ----------
    seed : int
        The seed it was drawn from.
    before, after : (H, W, 3) uint8 ndarray
        The photos.
    before_labels, after_labels : (H, W) uint8 ndarray
        Their exact label maps.
    homography : (3, 3) float64 ndarray
        True AFTER -> BEFORE pixel mapping (the camera change).
    displacement : (H, W, 2) float32 ndarray or None
        Where the body also moved non-rigidly: for every AFTER pixel, its true BEFORE
        position minus the homography's, ``(dx, dy)``; None when the motion is exactly
        the homography.
    truth : dict
        ``{"homography", "metrics", ...}``: JSON-ready, metrics in the shape of
        result.json's ``metrics`` computed from the true label maps.
    """

    seed: int
    before: np.ndarray = field(repr=False, compare=False)
    after: np.ndarray = field(repr=False, compare=False)
    before_labels: np.ndarray = field(repr=False, compare=False)
    after_labels: np.ndarray = field(repr=False, compare=False)
    homography: np.ndarray = field(repr=False, compare=False)
    displacement: np.ndarray | None = field(repr=False, compare=False)
    truth: dict[str, Any] = field(repr=False, compare=False)


@opencv_baseline()
def render_pair(
    seed: int,
    *,
    size: tuple[int, int] = (512, 512),
    options: SynthOptions | None = None,
    change: Literal["random", "none"] | DiseaseChange = "random",
) -> PhantomPair:
    """A month-0 / month-10 pair of one view with known camera, lighting and disease change.

    Parameters
    ----------
    seed : int
        Seed; the same seed and options give byte-identical output.
    size : (width, height)
        Size of both photos in pixels.
    options : SynthOptions, optional
        What kinds of phantoms to draw.
    change : "random", "none" or DiseaseChange
        The disease course: drawn at random, none at all (camera and lighting change
        only, for repeatability studies), or given.

    Returns
    -------
    PhantomPair

    Raises
    ------
    UsageError
        A bad size, options or change.
    """
    opts = options or SynthOptions()
    photo_shape = _check_size(size)
    rs = _streams(seed)
    scene = _build_scene(seed, photo_shape, opts, rs)
    world_shape = scene.framing.world_shape
    cam_b = _before_camera(rs, world_shape, photo_shape)
    light_b = sample_lighting(rs["light_b"])
    sensor_b = sample_sensor(rs["sensor_b"], photo_shape, opts.artefacts)

    if isinstance(change, DiseaseChange):
        dc = change
    elif change == "none":
        dc = DiseaseChange()
    elif change == "random":
        dc = sample_change(rs["change"], scene.hair_loss_before)
    else:
        raise UsageError(f"change must be 'random', 'none' or a DiseaseChange, got {change!r}")
    disease_a = _change_disease(scene, dc, rs["change"])

    visit_b = _visit(scene, scene.disease, opts)
    visit_a = visit_b if disease_a is scene.disease else _visit(scene, disease_a, opts, before_kept=visit_b.kept)
    k = opts.camera_change
    cam_a = sample_camera(rs["cam_a"], world_shape, photo_shape, rotation=10.0 * k, scale=(1 - 0.13 * k, 1 + 0.15 * k), shift=0.06 * k, tilt=0.05 * k, base=cam_b)
    light_a = sample_lighting(rs["light_a"], base=light_b, change=opts.lighting_change)
    sensor_a = sample_sensor(rs["sensor_a"], photo_shape, opts.artefacts)
    rd = rs["deform"]
    deformation = None
    if rd.random() < opts.nonrigid and k > 0:
        deformation = sample_deformation(rd, world_shape, rd.uniform(0.004, 0.015) * max(photo_shape) * k)

    img_b, lab_b = _photograph(visit_b, cam_b, photo_shape, light_b, sensor_b, rs["noise_b"])
    img_a, lab_a = _photograph(visit_a, cam_a, photo_shape, light_a, sensor_a, rs["noise_a"], deformation)

    hom = mat3_mul(cam_b.matrix, mat3_inv(cam_a.matrix))
    hom = hom / hom[2, 2]
    disp = None
    if deformation is not None:
        disp = _residual_displacement(cam_a, cam_b, deformation, hom, photo_shape)
    metrics = true_metrics(lab_b, lab_a, hom, disp)
    truth: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        # Same bytes on any x86-64 CPU, for the same versions of these (docs/phantoms.md).
        "library_versions": {"numpy": np.__version__, "opencv": cv2.__version__},
        "seed": int(seed),
        "size": [photo_shape[1], photo_shape[0]],
        "homography": [[float(v) for v in row] for row in hom],
        "displacement": None,
        "metrics": metrics,
        "scene": scene.info(),
        "change": "none" if dc.is_none else dc.to_dict(),
        "lesions_month10": [s.to_dict() for s in disease_a.lesions],
        "hair_level": {"month0": round(scene.disease.hair.level, 5), "month10": round(disease_a.hair.level, 5)},
        "camera": {"before": cam_b.to_dict(), "after": cam_a.to_dict(), "deformation": None if deformation is None else deformation.to_dict()},
        "photometric": {"before": {**light_b.to_dict(), **sensor_b.to_dict()}, "after": {**light_a.to_dict(), **sensor_a.to_dict()}},
        "options": opts.to_dict(),
    }
    return PhantomPair(int(seed), img_b, img_a, lab_b, lab_a, hom, disp, truth)


def _change_disease(scene: _Scene, dc: DiseaseChange, rng: np.random.Generator) -> _Disease:
    if dc.is_none:
        return scene.disease
    lesions = []
    for s in scene.disease.lesions:
        if rng.random() < dc.resolve:
            lesions.append(change_lesion(s, resolve=True, residue=dc.residue * rng.uniform(0.3, 1.0)))
        else:
            lesions.append(change_lesion(s, shrink=dc.shrink * rng.uniform(0.5, 1.5), fade=float(np.clip(dc.fade * rng.uniform(0.85, 1.15), 0.05, 1.5))))
    if dc.new_lesions:
        new = sample_lesions(rng, scene.framing, scene.body, scene.fitzpatrick, dc.new_lesions, (0.2, 0.9), scene.photo_shape)
        lesions.extend(replace(s, radius=s.radius * 0.6) for s in new)
    lesions = [replace(s, contrast=min(1.0, s.contrast)) for s in lesions]
    # Hair: move the cut level, and add islands of regrowth or new patches.
    g = scene.loss
    base = scene.body.hair_base
    shift = None
    h, w = g.shape
    mmpp = scene.framing.mm_per_px
    if dc.regrowth_islands or dc.new_loss_patches:
        shift = np.zeros_like(g)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        kept = base * (g < scene.disease.hair.level)
        for n, where, sign in ((dc.regrowth_islands, (base >= 0.5) & (kept < 0.5), -1.0), (dc.new_loss_patches, kept >= 0.5, 1.0)):
            ys, xs = np.nonzero(where)
            for _ in range(n if len(xs) else 0):
                i = int(rng.integers(len(xs)))
                r = rng.uniform(8, 35) / mmpp
                t = np.maximum(1.0 - ((xx - np.float32(xs[i])) ** 2 + (yy - np.float32(ys[i])) ** 2) * np.float32(1.0 / (r * r)), 0.0)
                shift += np.float32(sign * 3.0) * t * t
    if dc.hair_loss_after is None:
        level = scene.disease.hair.level
    else:
        level = cut_level(g if shift is None else g + shift, base, dc.hair_loss_after)
    return _Disease(tuple(lesions), HairState(level, shift, dc.regrowth_white))


def _residual_displacement(cam_a: Camera, cam_b: Camera, deformation: Deformation, hom: np.ndarray, photo_shape: tuple[int, int]) -> np.ndarray:
    """For every AFTER pixel: true BEFORE position minus the homography's."""
    mx, my = photo_to_world(cam_a, photo_shape, deformation)
    wx, wy = mx.astype(np.float64), my.astype(np.float64)
    m = cam_b.matrix
    den = m[2, 0] * wx + m[2, 1] * wy + m[2, 2]
    bx = (m[0, 0] * wx + m[0, 1] * wy + m[0, 2]) / den
    by = (m[1, 0] * wx + m[1, 1] * wy + m[1, 2]) / den
    hp, wp = photo_shape
    x = np.arange(wp, dtype=np.float64)[None, :]
    y = np.arange(hp, dtype=np.float64)[:, None]
    den = hom[2, 0] * x + hom[2, 1] * y + hom[2, 2]
    hx = (hom[0, 0] * x + hom[0, 1] * y + hom[0, 2]) / den
    hy = (hom[1, 0] * x + hom[1, 1] * y + hom[1, 2]) / den
    return np.stack([bx - hx, by - hy], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------- truth helpers


def map_after_to_before(points: np.ndarray, homography: np.ndarray, displacement: np.ndarray | None = None) -> np.ndarray:
    """True BEFORE positions of AFTER points.

    Parameters
    ----------
    points : (N, 2) float ndarray
        AFTER pixel coordinates ``(x, y)``.
    homography : (3, 3) ndarray
        True AFTER -> BEFORE homography.
    displacement : (H, W, 2) float32 ndarray, optional
        Residual displacement of the AFTER frame (bilinearly sampled at the points).

    Returns
    -------
    (N, 2) float64 ndarray
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = map_points(homography, pts)
    if displacement is not None and len(pts):
        import cv2

        mx = pts[:, 0].astype(np.float32).reshape(-1, 1)
        my = pts[:, 1].astype(np.float32).reshape(-1, 1)
        d = cv2.remap(displacement, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2)
        out = out + d.astype(np.float64)
    return out


def before_to_after_maps(
    homography: np.ndarray,
    displacement: np.ndarray | None,
    before_shape: tuple[int, int],
    iterations: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """For every BEFORE pixel, the AFTER position that the true motion maps onto it.

    Inverts ``x_b = H x_a + d(x_a)`` by fixed-point iteration (the displacement is smooth
    and its slope small, so a few iterations reach float precision).

    Returns
    -------
    map_x, map_y : (H_b, W_b) float32 ndarray
        AFTER coordinates, for :func:`cv2.remap`.
    """
    import cv2

    hb, wb = before_shape
    inv = mat3_inv(np.asarray(homography, dtype=np.float64))
    xb = np.broadcast_to(np.arange(wb, dtype=np.float64)[None, :], (hb, wb))
    yb = np.broadcast_to(np.arange(hb, dtype=np.float64)[:, None], (hb, wb))

    def apply_inv(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        den = inv[2, 0] * x + inv[2, 1] * y + inv[2, 2]
        return (inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]) / den, (inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]) / den

    xa, ya = apply_inv(xb, yb)
    if displacement is not None:
        for _ in range(iterations):
            d = cv2.remap(displacement, xa.astype(np.float32), ya.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            xa, ya = apply_inv(xb - d[..., 0], yb - d[..., 1])
    return xa.astype(np.float32), ya.astype(np.float32)


def align_to_before(
    after_array: np.ndarray,
    homography: np.ndarray,
    displacement: np.ndarray | None,
    before_shape: tuple[int, int],
    *,
    nearest: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp an AFTER-frame array into BEFORE's frame with the true motion.

    Parameters
    ----------
    after_array : (H_a, W_a) or (H_a, W_a, C) ndarray
        Label map, mask or image in AFTER's frame.
    homography : (3, 3) ndarray
        True AFTER -> BEFORE homography.
    displacement : (H_a, W_a, 2) float32 ndarray or None
        Residual displacement; None for a pure homography.
    before_shape : (H_b, W_b)
        BEFORE's size.
    nearest : bool
        Nearest-neighbour sampling (label maps); else bilinear.

    Returns
    -------
    aligned : ndarray of BEFORE's size
        0 outside AFTER's coverage.
    common : (H_b, W_b) bool ndarray
        BEFORE pixels that AFTER covers (the common region of the change metrics).
    """
    import cv2

    if displacement is None:
        return (
            warp_to_before(after_array, homography, before_shape, nearest=nearest),
            coverage_mask(homography, after_array.shape[:2], before_shape),
        )
    mx, my = before_to_after_maps(homography, displacement, before_shape)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    aligned = cv2.remap(after_array, mx, my, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ones = np.ones(after_array.shape[:2], dtype=np.uint8)
    common = cv2.remap(ones, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    return aligned, common


def true_metrics(
    before_labels: np.ndarray,
    after_labels: np.ndarray,
    homography: np.ndarray,
    displacement: np.ndarray | None = None,
) -> dict[str, Any]:
    """True metrics of a pair in the exact shape of result.json's ``metrics``.

    Per-photo metrics of each label map (default ROI: everything not background) and
    change metrics in BEFORE's frame inside the region AFTER covers, with AFTER's
    labels aligned by the true motion, as :func:`imgtool.pipeline.analyze_pair` does
    with its estimated homography.

    Parameters
    ----------
    before_labels, after_labels : (H, W) uint8 ndarray
        True label maps.
    homography : (3, 3) ndarray
        True AFTER -> BEFORE homography.
    displacement : (H, W, 2) float32 ndarray, optional
        Residual non-rigid displacement of the AFTER frame.

    Returns
    -------
    dict
        ``{"before": ..., "after": ..., "change": ...}``.
    """
    # The EASI share counts lesions of at least the pipeline's default minimum, as result.json does.
    m_b = photo_metrics(before_labels, min_lesion_area_px=default_min_lesion_area_px(before_labels.shape))
    m_a = photo_metrics(after_labels, min_lesion_area_px=default_min_lesion_area_px(after_labels.shape))
    aligned, common = align_to_before(after_labels, homography, displacement, before_labels.shape)
    ch = change_metrics(m_b, m_a, before_labels, aligned, common=common)
    return {"before": m_b.to_dict(), "after": m_a.to_dict(), "change": ch.to_dict()}


def photo_mm_per_px(pair: PhantomPair) -> float:
    """BEFORE photo's pixel size in mm (the canvas pixel size over the camera scale)."""
    scene = pair.truth["scene"]
    return float(scene["mm_per_px"]) / float(pair.truth["camera"]["before"]["scale"])
