"""Phantom bodies and lighting: cross-sections, creases, fill light, subsurface wrap, framing."""

from __future__ import annotations

import math

import cv2
import numpy as np

from imgtool.synth._camera import Lighting, sample_lighting, shade
from imgtool.synth._scene import _Canvas, _cylinder_height, _occlusion, build_body, choose_framing


def _lighting(**kw: object) -> Lighting:
    base = dict(
        direction=(0.0, 0.0, 1.0),
        ambient=0.1,
        diffuse=0.9,
        light_rgb=(1.0, 1.0, 1.0),
        specular=0.0,
        shininess=8,
        ramp=(0.0, 0.0, 0.0),
        white_balance=(1.0, 1.0, 1.0),
        exposure=1.0,
        contrast=0.0,
        shadows=(),
    )
    base.update(kw)
    return Lighting(**base)  # type: ignore[arg-type]


def _hemisphere(n: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Normals (x, y) of a hemisphere filling an n x n image, and the radius of each pixel."""
    c = (n - 1) / 2.0
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    u, v = (x - c) / c, (y - c) / c
    r = np.sqrt(u * u + v * v)
    inside = r < 1.0
    normals = np.stack([np.where(inside, u, 0.0), np.where(inside, v, 0.0)], axis=-1).astype(np.float32)
    return normals, r


def test_cross_section_rises_from_the_edge_without_a_midline_crease():
    cov = np.zeros((60, 100), dtype=np.float32)
    cov[:, 20:61] = 1.0  # a 41 px wide strip, midline at column 40
    smooth = _cylinder_height(cov, 30.0, depth=1.0, smooth=0.25)
    sharp = _cylinder_height(cov, 30.0, depth=1.0, smooth=0.0)
    row = smooth[30]
    assert np.all(row[:20] == 0) and np.all(row[61:] == 0)
    assert np.all(np.diff(row[20:38]) > 0) and int(np.argmax(row)) in (39, 40, 41)  # rises to the middle
    assert np.allclose(row[20:61], row[20:61][::-1], atol=0.2)  # symmetric (to the blur's resampling)
    # Steepest at the silhouette, flat in the middle: the surface turns away at the edge ...
    assert row[21] - row[20] > 5 * (row[39] - row[38])
    # ... but not edge-on in one step (that draws an outline in the photo).
    assert row[20] < 0.3 * 30.0
    # The circular profile has a kink on the midline (a visible crease); the smoothed one not.
    kink_sharp = abs(sharp[30, 41] - 2 * sharp[30, 40] + sharp[30, 39])
    kink_smooth = abs(row[41] - 2 * row[40] + row[39])
    assert kink_smooth < 0.5 * kink_sharp


def test_relief_along_a_shallow_edge_has_no_staircase_ticks():
    # A pixel mask's outline along a shallow slope is a staircase; the distance from it
    # made a crease at every step, which the steep rim shaded as a row of ticks.
    h_, w_ = 120, 400
    y, x = np.mgrid[0:h_, 0:w_].astype(np.float32)
    mask = (y >= 40 + x / 20).astype(np.float32)
    h = _cylinder_height(mask, 30.0, depth=0.75, smooth=0.25)
    for d in (1.5, 3.0, 6.0):  # px inside the true (slanted) edge
        xs = np.arange(20, 380, 0.5, dtype=np.float32)
        ys = (40 + xs / 20 + d * math.sqrt(1 + 1 / 400)).astype(np.float32)
        v = cv2.remap(h, xs[None, :], ys[None, :], cv2.INTER_LINEAR)[0]
        assert float(np.abs(np.diff(v, 2)).max()) < 0.08  # was 0.2-0.54


def test_a_canvas_inside_the_body_is_flat_not_nan():
    h = _cylinder_height(np.ones((40, 50), dtype=np.float32), 10.0, depth=0.6, smooth=0.25)
    assert np.isfinite(h).all()
    assert float(h.max() - h.min()) < 1e-3


def test_shading_darkens_towards_the_silhouette_and_reddens_there():
    normals, r = _hemisphere()
    albedo = np.full(r.shape + (3,), 0.5, dtype=np.float32)
    oil = np.zeros(r.shape, dtype=np.float32)
    lit = shade(albedo, normals, oil, _lighting(subsurface=0.5), 0.0)
    ring = lambda a, b: (r >= a) & (r < b)  # noqa: E731
    g_centre = float(lit[..., 1][ring(0.0, 0.2)].mean())
    g_mid = float(lit[..., 1][ring(0.5, 0.6)].mean())
    g_rim = float(lit[..., 1][ring(0.9, 0.97)].mean())
    assert g_centre > g_mid > g_rim
    assert g_rim < 0.6 * g_centre
    # Subsurface wrap: red falls off more slowly than green towards the silhouette.
    rg_centre = float((lit[..., 0] / lit[..., 1])[ring(0.0, 0.2)].mean())
    rg_rim = float((lit[..., 0] / lit[..., 1])[ring(0.9, 0.97)].mean())
    assert rg_rim > rg_centre + 0.1
    # Without subsurface scattering the channels shade alike.
    flat = shade(albedo, normals, oil, _lighting(subsurface=0.0), 0.0)
    assert np.allclose(flat[..., 0], flat[..., 1], atol=1e-6)


def test_fill_light_lifts_the_side_the_key_does_not_reach():
    normals, r = _hemisphere()
    albedo = np.full(r.shape + (3,), 0.5, dtype=np.float32)
    oil = np.zeros(r.shape, dtype=np.float32)
    key = (math.sin(0.8), 0.0, math.cos(0.8))  # from the right
    fill_dir = (-math.sin(0.8), 0.0, math.cos(0.8))  # from the left
    left = (r < 0.95) & (normals[..., 0] < -0.8)  # turned away from the key
    dark = shade(albedo, normals, oil, _lighting(direction=key, fill=0.0, fill_direction=fill_dir), 0.0)[..., 1]
    filled = shade(albedo, normals, oil, _lighting(direction=key, fill=0.3, fill_direction=fill_dir), 0.0)[..., 1]
    assert float(filled[left].mean()) > float(dark[left].mean()) + 0.05
    # The fill adds nothing where the surface faces away from it too.
    right = (r < 0.95) & (normals[..., 0] > 0.85)
    assert float(np.abs(filled[right] - dark[right]).max()) < 0.02


def test_sampled_lighting_has_a_fill_from_the_other_side():
    for seed in range(20):
        light = sample_lighting(np.random.default_rng(seed))
        kx, ky, _ = light.direction
        fx, fy, _ = light.fill_direction
        assert 0.0 < light.fill < light.diffuse
        assert kx * fx + ky * fy <= 0.0 + 1e-9 or math.hypot(kx, ky) < 0.2  # opposite half, unless the key is on-axis
        d = light.to_dict()
        assert len(d["fill_direction"]) == 3 and 0.0 <= d["subsurface"] <= 1.0


def test_occlusion_darkens_a_groove_and_leaves_flat_skin_open():
    h = np.zeros((80, 80), dtype=np.float32)
    h[:, 38:42] = -6.0  # a groove 4 px wide, 6 px deep
    inside = np.ones_like(h)
    ao = _occlusion(h, inside, (4.0, 12.0), 0.6)
    assert float(ao[40, 40]) < 0.8
    assert float(ao[40, 5]) == 1.0
    assert float(ao.min()) >= 0.3


def test_back_spine_groove_is_in_the_shade_of_its_muscles():
    found = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        fr = choose_framing(rng, "back", (256, 256), False, 1.18)
        body = build_body(rng, fr, 3)
        c = _Canvas(fr)
        # Lower back: spine at x = 0 against 45 mm beside it, where the canvas has skin there.
        for y_mm in (80.0, 150.0):
            (sx, sy), (mx, my) = np.round(c.px(np.array([[0.0, y_mm], [45.0, y_mm]]))).astype(int)
            h, w = body.coverage.shape
            if not (0 <= sy < h and 0 <= mx < w and body.coverage[sy, sx] > 0.99 and body.coverage[my, mx] > 0.99):
                continue
            found += 1
            assert body.tint[sy, sx, 1] < body.tint[my, mx, 1]  # occlusion in the groove
            assert body.height[sy, sx] < body.height[my, mx]  # the groove is lower than the erector spinae
    assert found >= 3


def test_torso_silhouette_has_no_dark_rim():
    # Ambient occlusion used to be measured on the whole relief, so the trunk's roll-off
    # towards its outline read as a crease: a dark band all round the silhouette (rim
    # tint about 0.5-0.65 of the core's). Only creases and hollows darken now.
    for view in ("back", "chest"):
        for seed in range(4):
            rng = np.random.default_rng(seed)
            fr = choose_framing(rng, view, (128, 128), False, 1.18)
            body = build_body(rng, fr, 3)
            c = _Canvas(fr)
            inside = (body.coverage + body.clothing >= 0.5).astype(np.uint8)
            d = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_5) * fr.mm_per_px
            rows = (c.yy >= -200.0) & (c.yy <= 80.0)  # the trunk between the armpits and the forearms' tan
            skin = body.coverage >= 0.99
            g = body.tint[..., 1]
            rim = g[rows & skin & (d >= 3.0) & (d <= 15.0)]
            core = g[rows & skin & (d >= 60.0)]
            assert rim.size > 50 and core.size > 50
            assert float(np.median(rim)) > 0.9 * float(np.median(core)), (view, seed)


def test_limb_outline_has_no_dark_rim():
    # As on the trunk: a limb's rim was 0.67-0.83 times as bright (tint) as its middle.
    for seed in range(6):
        rng = np.random.default_rng(seed)
        fr = choose_framing(rng, "limb", (128, 128), False, 1.18)
        body = build_body(rng, fr, 3)
        inside = (body.coverage + body.clothing >= 0.5).astype(np.uint8)
        d = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_5) * fr.mm_per_px
        skin = body.coverage >= 0.99
        g = body.tint[..., 1]
        assert float(np.median(g[skin & (d >= 2.0) & (d <= 8.0)])) > 0.9 * float(np.median(g[skin & (d >= 25.0)])), seed


def test_torso_is_not_mirror_symmetric():
    # Shoulders and waist are drawn per side (drop, width, trapezius slope, waist): the
    # silhouette differs from its mirror image by more than the outline's jitter.
    from imgtool.synth._scene import Framing

    xor, drops = [], []
    for seed in range(8):
        fr = Framing("back", 2.0, (0.0, -150.0), False, (451, 451))  # x = 0 on the middle column
        body = build_body(np.random.default_rng(seed), fr, 3)
        c = _Canvas(fr)
        m = ((body.coverage + body.clothing) >= 0.5)[(c.y > -380.0) & (c.y < 250.0)]
        mirror = m[:, ::-1]
        xor.append(np.count_nonzero(m ^ mirror) / np.count_nonzero(m | mirror))
        full = (body.coverage + body.clothing) >= 0.5
        cols = np.round(c.px(np.array([[150.0, 0.0], [-150.0, 0.0]]))[:, 0]).astype(int)
        tops = [float(c.y[np.argmax(full[:, j])]) for j in cols]  # the shoulder's top 150 mm out on each side
        drops.append(abs(tops[0] - tops[1]))
    # A mirrored outline with jitter only differed by 0.6-1.9 % of its area.
    assert float(np.median(xor)) > 0.03
    assert sum(d >= 8.0 for d in drops) >= 3  # one shoulder visibly lower in several patients
    assert max(drops) < 45.0  # but no caricature


def test_whole_leg_views_often_show_both_legs():
    def runs(line: np.ndarray) -> int:
        on = (line >= 0.5).astype(np.int8)
        return int(np.count_nonzero(np.diff(on) == 1) + on[0])

    two = 0
    for seed in range(24):
        rng = np.random.default_rng(100 + seed)
        fr = choose_framing(rng, "limb", (128, 128), False, 1.18)
        body = build_body(rng, fr, 2)
        h, w = body.coverage.shape
        # The limb runs roughly along or across the frame: look across it through the centre.
        if max(runs(body.coverage[h // 2]), runs(body.coverage[:, w // 2])) >= 2:
            two += 1
        n, _ = cv2.connectedComponents((body.coverage >= 0.5).astype(np.uint8))
        assert n - 1 <= 2  # never more than two limbs
    assert two >= 4


def test_leg_has_knee_calf_ankle_and_foot_not_a_tube():
    from imgtool.synth._scene import Framing, _leg_poly

    fr = Framing("limb", 1.0, (150.0, 0.0), False, (260, 1300), "leg")  # x from -500 to 800 mm, y +-130 mm
    c = _Canvas(fr)
    shin = 420.0
    for front in (True, False):
        for seed in range(3):
            poly = _leg_poly((0.0, 0.0), 0.0, 0.0, 64.0, 50.0, shin, 1.0 if seed % 2 else -1.0, front, np.random.default_rng(seed))
            cov = c.fill(poly) >= 0.5
            width = cov.sum(axis=0).astype(float) * fr.mm_per_px  # across the leg at each x (mm from the knee)

            def w(a: float, b: float, fn=np.max) -> float:
                return float(fn(width[(c.x >= a) & (c.x <= b)]))

            thigh, knee = w(-420.0, -380.0), w(-5.0, 5.0)
            calf, ankle = w(0.2 * shin, 0.5 * shin), w(0.75 * shin, 0.95 * shin, np.min)
            foot = w(shin + 60.0, shin + 120.0 if front else shin + 175.0)
            assert knee < 0.85 * thigh
            assert calf > 1.03 * w(0.08 * shin, 0.14 * shin, np.min)  # the calf bulges below the knee
            assert ankle < 0.72 * calf  # and narrows to the ankle
            assert foot > 1.2 * ankle  # the foot (or sole) widens again
            # It ends in five toes: the outline's reach along the leg, row by row across
            # it, has five tips with a cleft of at least 1.5 mm between neighbours.
            rows = np.nonzero(cov.any(axis=1))[0]
            reach = [float(np.nonzero(cov[r])[0].max()) for r in rows]
            tips, rising, hi, lo = 0, True, reach[0], reach[0]
            for v in reach[1:]:
                if rising and v > hi:
                    hi = v
                elif rising and hi - v >= 1.5 / fr.mm_per_px:
                    tips, rising, lo = tips + 1, False, v
                elif not rising and v < lo:
                    lo = v
                elif not rising and v - lo >= 1.5 / fr.mm_per_px:
                    rising, hi = True, v
            assert tips + int(rising) == 5


def test_some_whole_leg_shots_show_the_ankles_and_feet(monkeypatch):
    import imgtool.synth._scene as scene

    ankles = []
    real = scene._foot_relief

    def spy(c, ankle, *a, **k):  # record where each leg's ankle is drawn
        ankles.append((c, ankle))
        return real(c, ankle, *a, **k)

    monkeypatch.setattr(scene, "_foot_relief", spy)
    shots = with_feet = 0
    for seed in range(60):
        rng = np.random.default_rng(500 + seed)
        fr = choose_framing(rng, "limb", (96, 96), False, 1.18)
        if fr.part != "leg":
            continue
        ankles.clear()
        build_body(rng, fr, 3)
        h, w = fr.world_shape
        shots += 1
        seen = False
        for c, ankle in ankles:
            x, y = c.px(np.array([ankle]))[0]
            seen |= bool(0.085 * w <= x <= 0.915 * w and 0.085 * h <= y <= 0.915 * h)
        with_feet += seen
    assert shots >= 20
    # Main's framing showed an ankle in 1 of 32 whole-leg shots; lower-leg photos show them.
    assert 0.2 * shots <= with_feet <= 0.8 * shots


def test_soles_of_prone_legs_are_paler_than_the_legs_on_dark_skin(monkeypatch):
    import imgtool.synth._scene as scene
    from imgtool.synth._scene import Framing

    feet = []
    real = scene._foot_relief

    def spy(c, ankle, ang, wj, medial, front, rel):
        feet.append((ankle, ang, front))
        return real(c, ankle, ang, wj, medial, front, rel)

    monkeypatch.setattr(scene, "_foot_relief", spy)
    checked = 0
    for seed in range(12):
        feet.clear()
        fr = Framing("limb", 2.5, (0.0, 0.0), False, (700, 700), "leg")  # 1750 mm: the whole leg and foot
        body = build_body(np.random.default_rng(seed), fr, 6)
        c = _Canvas(fr)
        for ankle, ang, front in feet:
            d = np.array([math.cos(ang), math.sin(ang)])
            (sx, sy), (lx, ly) = np.round(c.px(np.array([np.array(ankle) + 80.0 * d, np.array(ankle) - 150.0 * d]))).astype(int)
            if not (0 <= sx < 700 and 0 <= sy < 700 and 0 <= lx < 700 and 0 <= ly < 700):
                continue
            if body.coverage[sy, sx] < 0.99 or body.coverage[ly, lx] < 0.99:
                continue
            ratio = body.tint[sy, sx, 1] / body.tint[ly, lx, 1]
            if front:
                assert ratio < 1.15  # the dorsum of the foot is ordinary skin
            else:
                assert ratio > 1.3  # the sole is much paler
                checked += 1
    assert checked >= 2


def _photo_window(a: np.ndarray) -> np.ndarray:
    """The middle of a canvas that the photo (canvas / 1.18) sees."""
    h, w = a.shape[:2]
    mh, mw = int(round(h * 0.085)), int(round(w * 0.085))
    return a[mh : h - mh, mw : w - mw]


def test_whole_arm_and_leg_shots_fill_the_frame():
    fills = {"arm": [], "leg": []}
    for seed in range(16):
        rng = np.random.default_rng(300 + seed)
        fr = choose_framing(rng, "limb", (128, 128), False, 1.18)
        assert fr.part in ("arm", "leg") and fr.to_dict()["part"] == fr.part
        body = build_body(rng, fr, 3)
        fills[fr.part].append(float(np.mean(_photo_window(body.coverage + body.clothing) >= 0.5)))
    assert len(fills["arm"]) >= 4 and len(fills["leg"]) >= 4
    # A tube across an empty background covered about a sixth of the frame; now the limb(s) fill a good part of it.
    assert np.median(fills["arm"]) > 0.3 and min(fills["arm"]) > 0.2
    assert np.median(fills["leg"]) > 0.25


def test_forearm_tapers_to_the_wrist_and_widens_into_the_hand():
    from imgtool.synth._scene import Framing

    for seed in range(4):
        rng = np.random.default_rng(seed)
        fr = Framing("limb", 2.0, (0.0, 0.0), False, (600, 600), "arm")
        body = build_body(rng, fr, 2)
        cov = body.coverage >= 0.5
        n, lab, stats, _ = cv2.connectedComponentsWithStats(cov.astype(np.uint8))
        assert n == 2  # one arm, its hand attached
        # Width of the limb across its own axis (principal axis of the mask), along the axis.
        ys, xs = np.nonzero(cov)
        pts = np.stack([xs, ys], axis=1).astype(np.float64)
        pts -= pts.mean(axis=0)
        ax = np.linalg.svd(pts, full_matrices=False)[2][0]
        t = pts @ ax
        s = pts @ np.array([-ax[1], ax[0]])
        bins = np.arange(t.min(), t.max() + 10, 10)
        widths = np.array([np.ptp(s[(t >= b) & (t < b + 10)]) if np.any((t >= b) & (t < b + 10)) else 0 for b in bins[:-1]])
        if t.max() < -t.min():  # orient from the shoulder (root) to the hand
            widths = widths[::-1]
        widths = widths[widths > 0]
        wrist = int(np.argmin(widths[len(widths) // 3 : -3])) + len(widths) // 3
        # The wrist is narrower than the arm near the elbow and than the hand beyond it.
        assert widths[wrist] < 0.8 * np.max(widths[: len(widths) // 2])
        assert np.max(widths[wrist:]) > 1.25 * widths[wrist]


def test_chin_shades_the_neck_and_the_frame_cuts_at_the_neck():
    rng = np.random.default_rng(5)
    fr = choose_framing(rng, "chest", (256, 256), False, 1.18)
    photo_top_mm = fr.focus_mm[1] - 0.5 * fr.mm_per_px * fr.world_shape[0] / 1.18
    assert -440.0 <= photo_top_mm <= -370.0  # just above the shoulders' line (-300 .. -350 mm)
    from imgtool.synth._scene import Framing

    fr = Framing("chest", 1.5, (0.0, -400.0), False, (300, 300))
    body = build_body(np.random.default_rng(1), fr, 2)
    c = _Canvas(fr)
    # Under the chin (at -440 mm times the body size 0.85..1.12) the neck is in the
    # jaw's shadow, darker than the lower neck; the face above the jaw stands out.
    col = int(round(c.px(np.array([[0.0, 0.0]]))[0, 0]))
    rows = [r for r in range(fr.world_shape[0]) if -510.0 <= float(c.y[r]) <= -370.0]
    (_, low), = np.round(c.px(np.array([[0.0, -345.0]]))).astype(int)
    tint = body.tint[rows, col, 1]
    shadow = rows[int(np.argmin(tint))]
    assert tint.min() < 0.7 * body.tint[low, col, 1]
    above = shadow - int(round(30.0 / fr.mm_per_px))
    assert body.height[above, col] > body.height[shadow, col] + 8.0 / fr.mm_per_px


def test_bald_scalp_shines_where_the_light_is():
    rng = np.random.default_rng(2)
    fr = choose_framing(rng, "scalp", (200, 200), False, 1.18)
    body = build_body(rng, fr, 2)
    assert 1.8 <= body.oil_gain <= 3.0
    trunk = build_body(np.random.default_rng(2), choose_framing(np.random.default_rng(2), "back", (64, 64), False, 1.18), 2)
    assert trunk.oil_gain == 1.0
    h = body.height
    gx = np.zeros_like(h)
    gy = np.zeros_like(h)
    gx[:, 1:-1] = 0.5 * (h[:, 2:] - h[:, :-2])
    gy[1:-1, :] = 0.5 * (h[2:, :] - h[:-2, :])
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    normals = np.stack([-gx * inv, -gy * inv], axis=-1).astype(np.float32)
    light = (0.45, -0.3, math.sqrt(1 - 0.45**2 - 0.3**2))
    oil = (np.float32(0.4 * body.oil_gain) * (body.coverage >= 0.5)).astype(np.float32)
    albedo = np.full(h.shape + (3,), 0.5, dtype=np.float32)
    lit = shade(albedo, normals, oil, _lighting(direction=light, specular=0.3, shininess=16), 0.0)
    matte = shade(albedo, normals, oil, _lighting(direction=light, specular=0.0, shininess=16), 0.0)
    spec = (lit - matte)[..., 1] * (body.coverage >= 0.99)
    assert spec.max() > 0.15  # a visible highlight
    y, x = np.unravel_index(int(np.argmax(spec)), spec.shape)
    hv = np.array([light[0], light[1], light[2] + 1.0])
    hv /= np.linalg.norm(hv)
    n = np.array([normals[y, x, 0], normals[y, x, 1], math.sqrt(max(1 - normals[y, x, 0] ** 2 - normals[y, x, 1] ** 2, 0.0))])
    assert float(n @ hv) > 0.97  # where the normal faces the half vector
    # and it is broad: a patch of the dome, not a single pixel
    assert np.count_nonzero(spec > 0.5 * spec.max()) > 100


def test_cast_shadow_bends_ends_and_softens_along_its_edge():
    n = 101
    normals = np.zeros((n, n, 2), dtype=np.float32)
    oil = np.zeros((n, n), dtype=np.float32)
    albedo = np.full((n, n, 3), 0.5, dtype=np.float32)
    flat = shade(albedo, normals, oil, _lighting(), 0.0)[..., 1]
    # angle 0: the shadow lies at x > offset (right); the occluder ends at across (y) = 0.2.
    sh = (0.0, 0.0, 0.05, 0.5, 0.0, 0.6, 0.2, 1.0)
    lit = shade(albedo, normals, oil, _lighting(shadows=(sh,)), 0.0)[..., 1] / flat
    assert lit[10, 95] < 0.6 and lit[10, 5] > 0.99  # shadowed beyond the edge near the occluder
    assert lit[95, 95] > 0.99  # past the occluder's end: no shadow
    # The edge turns (cubic term): where it crosses a row moves between rows.
    def edge_col(row: int) -> int:
        return int(np.argmax(lit[row] < 0.75))
    assert abs(edge_col(5) - edge_col(45)) >= 5
    # The penumbra widens along the edge.
    def penumbra(row: int) -> int:
        return int(np.count_nonzero((lit[row] < 0.95) & (lit[row] > 0.55)))
    assert penumbra(45) > penumbra(5)
