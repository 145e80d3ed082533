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
