"""Phantom hair and the scalp seen from above: strand geometry, highlights, follicular units, skull."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgtool.synth import SynthOptions
from imgtool.synth._hair import HairSpec, HairState, _roots, _sheen, render_hair
from imgtool.synth._scene import Body, Framing, build_body

MMPP = 0.1  # canvas mm per pixel: strands about a pixel wide


def _flat_body(shape: tuple[int, int], angle: float, height: np.ndarray | None = None, coverage: np.ndarray | None = None) -> Body:
    h, w = shape
    cov = np.ones(shape, np.float32) if coverage is None else coverage
    flow = np.empty(shape + (2,), np.float32)
    flow[..., 0], flow[..., 1] = math.cos(angle), math.sin(angle)
    hgt = np.zeros(shape, np.float32) if height is None else height
    return Body(cov, np.zeros(shape, np.float32), hgt, np.ones(shape + (3,), np.float32), cov.copy(), flow, np.zeros(shape, np.float32), cov >= 0.5, "scalp", False)


def _spec(length_mm: float, **kw: float) -> HairSpec:
    base = dict(kind="scalp", colour_name="black", grey=0.0, density=0.6, length_mm=length_mm, width_mm=0.12, curl=0.0, spread=0.05, seed=5)
    base.update(kw)
    return HairSpec(**base)


def _orientation(alpha: np.ndarray) -> float:
    """Dominant strand direction (radians, mod pi) from the structure tensor of the coverage."""
    gy, gx = np.gradient(alpha.astype(np.float64))
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    grad_dir = 0.5 * math.atan2(2 * jxy, jxx - jyy)  # across the strands
    return (grad_dir + math.pi / 2) % math.pi


@pytest.mark.parametrize("angle", [0.5, 2.2])
def test_strands_follow_the_flow_field(angle):
    shape = (160, 160)
    fr = Framing("scalp", MMPP, (0.0, 0.0), True, shape)
    body = _flat_body(shape, angle)
    layers = render_hair(_spec(6.0), fr, body, np.zeros(shape, np.float32), HairState(level=1.0))
    assert layers.alpha.mean() > 0.2
    got = _orientation(layers.alpha)
    diff = abs((got - angle % math.pi + math.pi / 2) % math.pi - math.pi / 2)
    assert diff < math.radians(8), (math.degrees(got), math.degrees(angle % math.pi))
    # Every hair pixel of a fully kept region is labelled hair.
    assert (layers.label >= 0.5).all()


def test_long_hair_lies_on_the_head_instead_of_sticking_out():
    """Strands combed outwards over a dome wrap around it; none reach far beyond its outline."""
    shape = (200, 200)
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float32)
    r = np.sqrt((xx - 99.5) ** 2 + (yy - 99.5) ** 2)
    head = (r <= 70).astype(np.float32)
    dome = np.sqrt(np.maximum(70.0**2 - r * r, 0.0)).astype(np.float32)
    fr = Framing("scalp", MMPP, (0.0, 0.0), False, shape)
    body = _flat_body(shape, 0.0, dome, head)
    flow = np.stack([(xx - 99.5) / (r + 1e-3), (yy - 99.5) / (r + 1e-3)], axis=-1).astype(np.float32)
    body = Body(body.coverage, body.clothing, body.height, body.tint, (r <= 60).astype(np.float32), flow, body.redness, body.lesion_ok, "scalp", False)
    # 12 mm strands (120 px) from roots up to 60 px from the centre would end 180 px out if straight.
    layers = render_hair(_spec(12.0), fr, body, np.zeros(shape, np.float32), HairState(level=1.0))
    total = float(layers.alpha.sum())
    assert total > 0
    outside = float(layers.alpha[r > 74].sum())
    assert outside < 0.01 * total
    # Hair piles up towards the outline where the head turns away (foreshortening).
    assert layers.alpha[(r > 62) & (r < 70)].mean() > layers.alpha[r < 40].mean()


def test_sheen_is_brightest_where_strands_lie_across_the_half_vector():
    """Kajiya-Kay: a strand across the half vector shines, one along it does not."""
    shape = (50, 50)
    light = np.array([0.0, 0.0, 1.0])  # light with the camera: the half vector is z
    flat = np.zeros(shape, np.float32)
    steep = np.tile(np.arange(50, dtype=np.float32) * 6.0, (50, 1))  # rises 6 px per px along x
    wave = np.zeros((1, 2))
    pts = np.array([[[10.0, 25.0], [20.0, 25.0], [30.0, 25.0]]])
    lying, _ = _sheen(pts, flat, wave, light, 64)
    rising, _ = _sheen(pts, steep, wave, light, 64)
    assert np.allclose(lying, 1.0)
    assert (rising < 0.05).all()
    # Along y the steep field is flat: the strand lies across the half vector again.
    across, _ = _sheen(pts[:, :, ::-1].copy(), steep, wave, light, 64)
    assert np.allclose(across, 1.0)


def test_hairs_grow_in_follicular_units_of_one_to_three():
    shape = (200, 200)
    fr = Framing("scalp", MMPP, (0.0, 0.0), True, shape)
    body = _flat_body(shape, 0.0)
    _, pts, unit, boost = _roots(_spec(5.0, density=1.5), fr, body, 100000)
    assert boost == 1.0
    sizes = np.bincount(unit)
    assert set(np.unique(sizes)) <= {1, 2, 3}
    assert 1.7 < sizes.mean() < 2.1  # 0.3 x 1 + 0.5 x 2 + 0.2 x 3 = 1.9
    # Hairs of a unit leave the skin within a fraction of a millimetre of each other.
    centre = np.stack([np.bincount(unit, weights=pts[:, i]) / sizes for i in range(2)], axis=1)
    spread_mm = np.sqrt(((pts - centre[unit]) ** 2).sum(axis=1)) * MMPP
    assert np.median(spread_mm) < 0.3
    # Area x density hairs in all (within the rounding of units).
    assert abs(len(pts) - 1.5 * 200 * 200 * MMPP * MMPP) < 5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scalp_from_above_is_a_skull_not_an_ellipse(seed):
    """The head is wider behind than in front, its vertex is behind the middle, shoulders surround it."""
    rng = np.random.default_rng(seed)
    shape = (300, 300)
    fr = Framing("scalp", 1.0, (0.0, 0.0), False, shape)
    body = build_body(rng, fr, 2)
    head = body.hair_base + 0.0  # hair-bearing scalp
    rows = np.flatnonzero((body.coverage >= 0.5).any(axis=1))
    widths = (body.coverage >= 0.5).sum(axis=1)
    top, bottom = rows.min(), rows.max()
    front = widths[top + 30 : top + 60].mean()
    back = widths[150 + 20 : 150 + 50].mean()  # behind the middle (y > 0 is the back of the head)
    assert back > front * 1.05
    vertex_row = int(np.unravel_index(np.argmax(body.height), shape)[0])
    assert vertex_row > 150
    assert head.max() > 0.5 and bottom > 150 + 75
    # Shoulders in a shirt fill the sides behind the head (clothing is not skin).
    assert body.clothing[280:, :40].mean() > 0.9 and body.clothing[280:, -40:].mean() > 0.9
    assert (body.clothing[body.coverage >= 0.5] < 0.5).all()


def test_a_ruler_lying_on_the_head_hides_the_hair_under_it():
    from imgtool.synth import core

    opts = SynthOptions(views=("scalp",), hair_loss=(0.0, 0.0))
    for seed in range(40):
        rs = core._streams(seed)
        scene = core._build_scene(seed, (384, 384), opts, rs)
        if scene.occluder is not None and (scene.occluder[scene.body.coverage > 0.5] > 0.99).sum() > 200:
            break
    else:
        pytest.skip("no scalp scene with a ruler over the head in 40 seeds")
    visit = core._visit(scene, scene.disease, opts)
    under = (scene.occluder > 0.999) & (scene.body.coverage > 0.5)
    # Under the ruler the canvas is the ruler (composited into the background), not strands.
    np.testing.assert_allclose(visit.colour[under], scene.background[under], atol=1e-6)


def test_one_hair_colour_per_head_no_strand_much_lighter_than_the_base(monkeypatch):
    """Without highlights, no strand or lock is more than 1.12x lighter than the head's colour."""
    from imgtool.synth import _hair

    monkeypatch.setattr(_hair, "_sheen", lambda pts, *a: (np.zeros((pts.shape[0], pts.shape[1] - 1)),) * 2)
    monkeypatch.setattr(_hair, "_band", lambda mid, *a: np.zeros(mid.shape[:2]))
    shape = (160, 160)
    fr = Framing("scalp", MMPP, (0.0, 0.0), True, shape)
    for colour, length in (("brown", 60.0), ("auburn", 8.0), ("dark_brown", 30.0)):
        for seed in (1, 2):
            layers = render_hair(_spec(length, colour_name=colour, seed=seed), fr, _flat_body(shape, 0.4), np.zeros(shape, np.float32), HairState(level=1.0))
            base = _hair.srgb_to_linear(_hair.HAIR_COLOURS[colour]).astype(np.float32)
            assert layers.alpha.mean() > 0.1
            assert (layers.rgb <= layers.alpha[..., None] * base * np.float32(_hair._MAX_LIGHTER) + 1e-5).all()
            # ... and the head is not uniformly flat either: locks and partings are darker.
            lum = layers.rgb[..., 1][layers.alpha > 0.8] / layers.alpha[layers.alpha > 0.8]
            assert np.percentile(lum, 10) < 0.85 * base[1]


def test_long_hair_hides_the_scalp_under_it_and_short_hair_does_not():
    """A full head of long hair covers ~98 % of the scalp (a dark under-layer under the strands)."""
    shape = (200, 200)
    fr = Framing("scalp", MMPP, (0.0, 0.0), True, shape)
    body = _flat_body(shape, 0.7)
    inner = (slice(40, 160), slice(40, 160))
    long_ = render_hair(_spec(120.0, density=1.0, seed=3), fr, body, np.zeros(shape, np.float32), HairState(level=1.0))
    assert long_.alpha[inner].mean() > 0.96
    short = render_hair(_spec(4.0, density=1.0, seed=3), fr, body, np.zeros(shape, np.float32), HairState(level=1.0))
    assert short.alpha[inner].mean() < 0.9
    # Bald (nothing kept): no under-layer either.
    bald = render_hair(_spec(120.0, density=1.0, seed=3), fr, body, np.zeros(shape, np.float32), HairState(level=-1.0))
    assert bald.alpha.max() == 0.0


def test_whole_face_has_two_open_eyes_labelled_background():
    """The eyes are holes in the skin (label 0), painted with sclera, iris and pupil."""
    import cv2

    from imgtool.synth import render_photo

    opts = SynthOptions(views=("face",), close_up=0.0, lesions=(0, 0), distractors=0.0)
    image, labels = render_photo(4, size=(384, 384), options=opts)
    n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == 0).astype(np.uint8), connectivity=4)
    h, w = labels.shape
    holes = [i for i in range(1, n) if stats[i, 0] > 0 and stats[i, 1] > 0 and stats[i, 0] + stats[i, 2] < w and stats[i, 1] + stats[i, 3] < h and stats[i, 4] > 50]
    assert len(holes) == 2, [tuple(stats[i]) for i in range(1, n)]
    for i in holes:
        bw, bh = stats[i, 2], stats[i, 3]
        assert 2.0 < bw / bh < 5.0  # an almond, wider than high
        eye = image[comp == i].astype(np.float32).mean(axis=1)
        # Light sclera and a dark pupil inside each opening.
        assert np.percentile(eye, 90) > 120 and eye.min() < 50
    # Side by side (the camera tilts the line between them by a few degrees), one each side of the middle.
    (x0, y0), (x1, y1) = sorted((stats[i, 0] + stats[i, 2] / 2, stats[i, 1] + stats[i, 3] / 2) for i in holes)
    assert abs(y1 - y0) < 0.2 * (x1 - x0) and x0 < w / 2 < x1


def test_long_hairs_under_layer_fades_out_towards_the_hairline():
    """No hard dark edge at a hairline: the under-layer rises from 0 to full over about 4 mm."""
    from imgtool.synth._hair import _under_layer

    shape = (40, 200)
    kept = np.zeros(shape, np.float32)
    kept[:, 100:] = 1.0  # hair from column 100 on (0.1 mm per pixel)
    under = _under_layer(kept, np.ones(shape, np.float32), 1.0, 15.0, 4.0 / MMPP)[20]
    assert under[:95].max() < 0.02  # none on the bald side
    assert under[100] < 0.1 and under[110] < 0.6  # thin at the hairline and 1 mm in
    assert under[145] > 0.9 and under[190] > 0.95  # full 4.5 mm in
    assert (np.diff(under[100:190]) >= -1e-6).all()


def test_grey_strands_stay_white_in_dark_hair():
    """The cap on lighter strands holds for the head's own colour only: greying strands stay white."""
    shape = (160, 160)
    fr = Framing("scalp", MMPP, (0.0, 0.0), True, shape)
    body = _flat_body(shape, 0.4)
    dark = render_hair(_spec(8.0, grey=0.0), fr, body, np.zeros(shape, np.float32), HairState(level=1.0))
    grey = render_hair(_spec(8.0, grey=0.5), fr, body, np.zeros(shape, np.float32), HairState(level=1.0))
    assert grey.rgb.mean() > 5.0 * dark.rgb.mean()


def _patch_edge_scene(angle: float, hair_mm: float = 15.0, rows: int = 120) -> tuple[Framing, Body, np.ndarray, np.ndarray]:
    """A flat scalp (0.1 mm per pixel) with ``hair_mm`` of hair and, right of it, 15 mm of bald patch.

    The loss field rises 0.1 per mm across the edge (as on the flank of an areata patch)
    and is cut at 0: returns the framing, body, field and the signed distance (mm) of every
    column from the edge, positive inside the patch.
    """
    edge = int(round(hair_mm / MMPP))
    shape = (rows, edge + 150)
    fr = Framing("scalp", MMPP, (0.0, 0.0), True, shape)
    body = _flat_body(shape, angle)
    dist_mm = (np.arange(shape[1], dtype=np.float32) - (edge - 0.5)) * MMPP
    g = np.tile(dist_mm * np.float32(0.1), (shape[0], 1))
    return fr, body, g, dist_mm


def _band_mean(field: np.ndarray, dist_mm: np.ndarray, lo: float, hi: float) -> float:
    cols = (dist_mm >= lo) & (dist_mm < hi)
    return float(field[10:-10, cols].mean())


def test_hair_thins_out_over_millimetres_across_a_patch_edge():
    """Hair density falls off gradually across a patch edge, not as a sharp mask edge.

    Cropped hair (1 mm strands combed along the edge) shows its roots' density: full
    5 mm inside the hair, partial 1 mm either side of the edge, none 5 mm into the patch.
    """
    fr, body, g, dist = _patch_edge_scene(math.pi / 2, rows=400)
    layers = render_hair(_spec(1.0, density=3.0, width_mm=0.1, seed=11), fr, body, g, HairState(level=0.0))
    full = _band_mean(layers.alpha, dist, -7.0, -4.0)
    assert full > 0.08
    inside_1mm = _band_mean(layers.alpha, dist, -1.5, -0.5) / full
    outside_1mm = _band_mean(layers.alpha, dist, 0.5, 1.5) / full
    assert 0.5 < inside_1mm < 0.93, inside_1mm
    assert 0.07 < outside_1mm < 0.5, outside_1mm
    assert _band_mean(layers.alpha, dist, 4.0, 7.0) < 0.03 * full
    # The density ramp is the label's field: the hair label ends where the density is a half.
    kept = layers.kept[60]
    assert kept[140] > 0.5 > kept[160] and 0.35 < kept[150] < 0.65
    assert (np.diff(kept[50:250]) <= 1e-6).all()


def test_long_hair_combed_over_a_patch_edge_covers_it_and_combed_away_leaves_it_bare():
    """Long hair flows on across a patch's edge (its depth with it); combed away from the patch, the skin shows."""
    fr, body, g, dist = _patch_edge_scene(0.0, 45.0)  # flow along +x: from the hair into the patch
    into = render_hair(_spec(40.0, density=1.5, width_mm=0.08, seed=4), fr, body, g, HairState(level=0.0))
    # 2-5 mm past the edge the patch lies under hair as dense as the hair itself.
    assert _band_mean(into.alpha, dist, 2.0, 5.0) > 0.85
    assert _band_mean(into.label >= 0.5, dist, 2.0, 5.0) > 0.9
    fr, body, g, dist = _patch_edge_scene(math.pi, 45.0)  # flow along -x: away from the patch
    away = render_hair(_spec(40.0, density=1.5, width_mm=0.08, seed=4), fr, body, g, HairState(level=0.0))
    assert _band_mean(away.alpha, dist, 4.0, 10.0) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_small_hair_blotches_in_bald_patches(seed):
    """Patchy scalps are a head of hair with round patches: no tufts of a few mm^2 left in the bald area."""
    import cv2

    from imgtool.synth import core

    opts = SynthOptions(views=("scalp",), close_up=0.0, hair_loss=(0.3, 0.6), lesions=(0, 0))
    rs = core._streams(seed)
    scene = core._build_scene(seed, (320, 320), opts, rs)
    visit = core._visit(scene, scene.disease, opts)
    mm2 = scene.framing.mm_per_px**2
    base = scene.body.hair_base >= 0.5
    hair = ((visit.kept >= 0.5) & base).astype(np.uint8)
    assert 0.25 < 1.0 - hair.sum() / base.sum() < 0.75
    n, _, stats, _ = cv2.connectedComponentsWithStats(hair, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA] * mm2
    assert (areas >= 20.0).all(), sorted(areas)[:5]


def test_regrowth_brings_sparse_vellus_hair_into_the_patch_that_is_still_bald():
    """When hair regrows, the patch left bald shows fine short hairs, too sparse to be labelled hair."""
    fr, body, g, dist = _patch_edge_scene(math.pi / 2, rows=300)
    spec = _spec(8.0, density=2.0, seed=12)
    before = render_hair(spec, fr, body, g, HairState(level=0.0))
    after = render_hair(spec, fr, body, g, HairState(level=0.5), before_kept=before.kept)  # the edge moves 5 mm in
    still_bald = (dist >= 9.0) & (dist < 14.0)
    bare = float(before.alpha[:, still_bald].mean())  # only a stray flyaway or two reach in
    assert bare < 0.002
    assert float(after.alpha[:, still_bald].mean()) > 10.0 * bare + 0.005
    assert (after.label[:, still_bald] < 0.5).all()
    # Without regrowth (the same cut at the follow-up) the patch stays as bare as it was.
    same = render_hair(spec, fr, body, g, HairState(level=0.0), before_kept=before.kept)
    assert float(same.alpha[:, still_bald].mean()) == bare
