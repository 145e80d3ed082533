"""Registration: known transforms recovered, honest status, colour correction, non-rigid field.

Every fixture is generated here: a procedural body view (wall, skin with pores, moles,
lesions, optional hair) in a "world" frame, photographed twice through known
homographies, so the true AFTER -> BEFORE homography is exact.
"""

from __future__ import annotations

import functools
import json

import cv2
import numpy as np
import pytest

from imgtool.cli import main
from imgtool.errors import UsageError
from imgtool.io import to_json
from imgtool.labels import BACKGROUND, HAIR, LESION, SKIN
from imgtool.registration import (
    Displacement,
    RegistrationOptions,
    apply_photometric,
    corner_error,
    coverage_mask,
    map_points,
    register,
    warp_map_to_before,
    warp_to_before,
)

VIEW = (400, 300)  # (W, H) of the photos


# --------------------------------------------------------------------------- fixtures


def _blob(rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    r = radius * (1 + 0.3 * sum(rng.uniform(-1, 1) * np.cos(k * t + rng.uniform(0, 6)) / k for k in range(2, 5)))
    pts = np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], 1).astype(np.int32)
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def _world(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A body view in the world frame: ``(H, W, 3) float32`` RGB and its label map (fresh copies)."""
    img, labels = _world_cached(seed)
    return img.copy(), labels.copy()


@functools.lru_cache(maxsize=None)
def _world_cached(seed: int, shape: tuple[int, int] = (800, 1000)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wall = rng.uniform(80, 200, 3).astype(np.float32)
    img = np.ones((h, w, 3), np.float32) * wall * (1 + 0.15 * (xx / w - 0.5))[..., None]
    for _ in range(4):  # door frames, sheet folds
        x0 = rng.uniform(0, w)
        cv2.line(img, (int(x0), 0), (int(x0 + rng.uniform(-100, 100)), h), tuple(float(c) for c in wall * 0.7), int(rng.integers(2, 6)))
    img += cv2.GaussianBlur(rng.normal(0, 6, (h, w)).astype(np.float32), (0, 0), 3)[..., None]
    body = _blob(rng, shape, (w * rng.uniform(0.45, 0.55), h * rng.uniform(0.45, 0.55)), min(h, w) * 0.45)
    tone = np.array([rng.uniform(170, 225), rng.uniform(120, 160), rng.uniform(95, 130)], np.float32)
    skin = np.ones((h, w, 3), np.float32) * tone * (1 - 0.2 * ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (w * w / 4))[..., None]
    skin += cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)[..., None] * 25 * np.array([1, 0.9, 0.8], np.float32)
    for _ in range(int(body.sum() / 2000)):  # moles and freckles
        c = tuple(float(v) for v in tone * rng.uniform(0.45, 0.8))
        cv2.circle(skin, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), int(rng.integers(2, 6)), c, -1, cv2.LINE_AA)
    img[body] = skin[body]
    labels = np.where(body, SKIN, BACKGROUND).astype(np.uint8)
    ys, xs = np.nonzero(body)
    for _ in range(6):
        i = rng.integers(len(ys))
        add_lesion(img, labels, _blob(rng, shape, (xs[i], ys[i]), rng.uniform(20, 50)) & body, rng)
    return img, labels


def add_lesion(img: np.ndarray, labels: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> None:
    """Paint an erythematous patch (in place) and label it lesion."""
    soft = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 3)[..., None]
    noise = cv2.GaussianBlur(rng.normal(0, 1, region.shape).astype(np.float32), (0, 0), 2)[..., None] * 15
    img[:] = img * (1 - soft) + (img * np.array([1.02, 0.72, 0.75], np.float32) + noise) * soft
    labels[region] = LESION


def add_hair(img: np.ndarray, labels: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> None:
    """Draw dark hair strands over a region (in place) and label it hair."""
    ys, xs = np.nonzero(region)
    for _ in range(int(len(ys) * 0.03)):
        i = rng.integers(len(ys))
        ang, length = rng.normal(0.8, 0.3), rng.uniform(8, 25)
        x0, y0 = int(xs[i]), int(ys[i])
        x1, y1 = int(x0 + length * np.cos(ang)), int(y0 + length * np.sin(ang))
        cv2.line(img, (x0, y0), (x1, y1), (40.0 * rng.uniform(0.7, 1.3), 30.0, 25.0), 1, cv2.LINE_AA)
    labels[region & (labels != BACKGROUND)] = HAIR


def _quad_map(quad: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    dst = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    return cv2.getPerspectiveTransform(np.float32(quad), dst).astype(np.float64)


def _shoot(world: np.ndarray, m: np.ndarray, nearest: bool = False) -> np.ndarray:
    out = cv2.warpPerspective(world, m, VIEW, flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out if nearest else np.clip(out, 0, 255).astype(np.uint8)


def _cameras(
    world_shape: tuple[int, int],
    *,
    rot: float = 0.0,
    scale: float = 1.0,
    persp: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    k: float = 0.45,
    centre: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """World -> BEFORE and world -> AFTER maps: AFTER's quad is BEFORE's rotated, zoomed, shifted, tilted."""
    h, w = world_shape
    bw = k * w
    bh = bw * (VIEW[1] - 1) / (VIEW[0] - 1)  # square pixels: a similarity of the world is one of the photo
    c = np.array(centre if centre is not None else (w / 2, h / 2))
    quad = np.array([[-bw / 2, -bh / 2], [bw / 2, -bh / 2], [bw / 2, bh / 2], [-bw / 2, bh / 2]])
    t = np.radians(rot)
    rmat = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    quad_a = quad @ rmat.T + np.array(shift) * [bw, bh]
    quad_a[:2, 0] *= 1 - persp  # a keystone: the top edge shorter than the bottom
    return _quad_map(quad + c, VIEW), _quad_map(quad_a + c, VIEW)


def _pair(seed: int, after_world: tuple[np.ndarray, np.ndarray] | None = None, **camera: float) -> dict[str, np.ndarray]:
    """BEFORE and AFTER photos of one world (AFTER's world may differ: disease change)."""
    img, lab = _world(seed)
    img_a, lab_a = after_world if after_world is not None else (img, lab)
    mb, ma = _cameras(img.shape[:2], **camera)  # type: ignore[arg-type]
    return {
        "before": _shoot(img, mb),
        "after": _shoot(img_a, ma),
        "before_labels": _shoot(lab, mb, nearest=True),
        "after_labels": _shoot(lab_a, ma, nearest=True),
        "h": mb @ np.linalg.inv(ma),
        "world_to_before": mb,
        "world_to_after": ma,
    }


def _relight(img: np.ndarray, gains: tuple[float, float, float], shading: float = 0.0) -> np.ndarray:
    h, w = img.shape[:2]
    ramp = 1 + shading * (np.arange(w, dtype=np.float32) / w - 0.5)
    return np.clip(img.astype(np.float32) * np.array(gains, np.float32) * ramp[None, :, None], 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- known transforms


@pytest.mark.parametrize(
    "camera",
    [
        {"rot": 30.0},
        {"rot": -12.0, "scale": 0.6, "k": 0.6},
        {"rot": 8.0, "scale": 1.6, "k": 0.35},
        {"rot": 5.0, "persp": 0.25, "shift": (0.05, -0.03)},
    ],
    ids=["rotation-30", "scale-0.6", "scale-1.6", "perspective"],
)
def test_recovers_known_transforms(camera: dict[str, float]) -> None:
    p = _pair(3, **camera)
    reg = register(p["before"], p["after"])
    assert reg.status == "ok", reg.reason
    assert corner_error(reg.homography, p["h"], p["after"].shape) < 0.5
    assert reg.quality["score"] > 0.5


def test_model_follows_the_evidence() -> None:
    # A pure rotation and zoom is a similarity; a keystone needs the homography.
    sim = _pair(4, rot=10.0, scale=1.2)
    persp = _pair(4, rot=3.0, persp=0.2)
    assert register(sim["before"], sim["after"]).model == "similarity"
    assert register(persp["before"], persp["after"]).model == "homography"


def test_invariant_to_brightness_and_white_balance() -> None:
    p = _pair(5, rot=7.0, scale=1.1)
    for gains, shading in [((0.55, 0.55, 0.55), 0.0), ((1.3, 1.0, 0.7), 0.4), ((0.8, 0.95, 1.35), -0.3)]:
        after = _relight(p["after"], gains, shading)
        reg = register(p["before"], after)
        assert reg.status == "ok", (gains, reg.reason)
        assert corner_error(reg.homography, p["h"], after.shape) < 0.5, gains


@pytest.mark.parametrize("with_labels", [False, True])
def test_robust_when_a_third_of_the_skin_changes(with_labels: bool) -> None:
    # Month 10: every lesion resolved, new ones appeared, hair regrew in patches.
    _, lab = _world(6)
    img_a, lab_a = _world_without_lesions(6)
    rng = np.random.default_rng(60)
    skin = lab != BACKGROUND
    ys, xs = np.nonzero(skin)
    changed = lab == LESION
    while changed.sum() < skin.sum() / 3:
        i = rng.integers(len(ys))
        region = _blob(rng, lab.shape, (xs[i], ys[i]), rng.uniform(30, 70)) & skin
        if rng.random() < 0.5:
            add_lesion(img_a, lab_a, region, rng)
        else:
            add_hair(img_a, lab_a, region, rng)
        changed |= region
    p = _pair(6, after_world=(img_a, lab_a), rot=-9.0, scale=0.9, persp=0.1)
    after = _relight(p["after"], (1.15, 1.0, 0.85))
    labels = {"before_labels": p["before_labels"], "after_labels": p["after_labels"]} if with_labels else {}
    reg = register(p["before"], after, **labels)
    assert reg.status == "ok", reg.reason
    assert corner_error(reg.homography, p["h"], after.shape) < 0.5


def _world_without_lesions(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same world with the lesion step skipped: what healed skin looks like."""
    rng_state = np.random.default_rng(seed)
    img, lab = _world(seed)
    # Re-render with lesions painted in skin colour: take the pixel colour from a
    # smoothed version of the surrounding healthy skin.
    skin_only = (lab == SKIN).astype(np.float32)
    num = cv2.GaussianBlur(img * skin_only[..., None], (0, 0), 25)
    den = cv2.GaussianBlur(skin_only, (0, 0), 25)[..., None]
    filled = img.copy()
    les = lab == LESION
    pores = cv2.GaussianBlur(rng_state.normal(0, 1, lab.shape).astype(np.float32), (0, 0), 1.0)[..., None] * 25
    filled[les] = (num / np.maximum(den, 1e-3) + pores)[les]
    return filled, np.where(les, SKIN, lab).astype(np.uint8)


def test_direct_search_without_feature_consensus() -> None:
    # Demanding more matches than any pair has forces the intensity-only search: it must
    # still find the transform, and say that it is less sure.
    forced = RegistrationOptions(min_inliers=100000, ok_inliers=100000)
    p = _pair(21, rot=6.0, scale=1.12, shift=(0.04, -0.03))
    reg = register(p["before"], p["after"], options=forced)
    assert reg.status == "low_confidence", reg.reason
    assert reg.quality["global_model"] == "direct"
    assert corner_error(reg.homography, p["h"], p["after"].shape) < 0.5
    other = _pair(22, rot=3.0)["after"]
    assert register(p["before"], other, options=forced).status == "failed"


@pytest.mark.parametrize("seed", [41, 43, 47], ids=["scalp", "chest", "back"])
def test_phantom_pairs(seed: int) -> None:
    # The project's phantoms: camera, lighting and disease change with exact truth.
    from imgtool.synth import render_pair

    p = render_pair(seed, size=(512, 384))
    assert p.displacement is None  # these seeds move the camera only
    reg = register(p.before, p.after, before_labels=p.before_labels, after_labels=p.after_labels)
    assert reg.status == "ok", reg.reason
    assert corner_error(reg.homography, p.homography, p.after.shape) < 0.5


def test_unrelated_phantoms_fail() -> None:
    from imgtool.synth import render_pair

    a, b = render_pair(43, size=(512, 384)), render_pair(47, size=(512, 384))
    assert register(a.before, b.after, before_labels=a.before_labels, after_labels=b.after_labels).status == "failed"


# --------------------------------------------------------------------------- failures


def test_unrelated_photos_fail() -> None:
    a = _pair(7)["before"]
    b = _pair(8, rot=5.0)["after"]
    reg = register(a, b)
    assert reg.status == "failed"
    assert reg.homography is None and not reg.aligned
    assert "unrelated" in reg.reason
    assert reg.quality["score"] == 0.0


def test_blank_image_fails() -> None:
    p = _pair(9)
    blank = np.full_like(p["before"], 128)
    noisy = np.clip(blank + np.random.default_rng(0).normal(0, 2, blank.shape), 0, 255).astype(np.uint8)
    for other in (blank, noisy):
        reg = register(p["before"], other)
        assert reg.status == "failed" and reg.homography is None
        assert "keypoints" in reg.reason


def test_views_that_do_not_overlap_fail() -> None:
    img, _ = _world(10)
    h, w = img.shape[:2]
    mb, _ = _cameras((h, w), k=0.4, centre=(w * 0.22, h / 2))
    ma, _ = _cameras((h, w), k=0.4, centre=(w * 0.78, h / 2))
    reg = register(_shoot(img, mb), _shoot(img, ma))
    assert reg.status == "failed" and reg.homography is None


def test_labels_must_match_their_photo() -> None:
    p = _pair(11)
    with pytest.raises(ValueError, match="before_labels"):
        register(p["before"], p["after"], before_labels=p["before_labels"][:-1])


def test_options_are_checked() -> None:
    with pytest.raises(UsageError):
        RegistrationOptions(models=("similarity", "spline"))
    with pytest.raises(UsageError):
        RegistrationOptions(ratio=1.5)


# --------------------------------------------------------------------------- convention


def test_homography_convention_through_json() -> None:
    # A landmark at a known world point: H (read back from JSON) must take its AFTER
    # position to its BEFORE position; pixel centres are integers in both.
    img, lab = _world(12)
    world_pt = np.array([[img.shape[1] * 0.53, img.shape[0] * 0.47]])
    cv2.circle(img, tuple(int(v) for v in world_pt[0]), 6, (20.0, 200.0, 240.0), -1, cv2.LINE_AA)
    mb, ma = _cameras(img.shape[:2], rot=14.0, scale=1.2, persp=0.1)
    before, after = _shoot(img, mb), _shoot(img, ma)
    reg = register(before, after)
    doc = json.loads(to_json(reg.to_dict()))
    h = np.array(doc["homography"])
    assert h.shape == (3, 3)
    landmark_after = map_points(ma, world_pt)
    landmark_before = map_points(mb, world_pt)
    assert np.linalg.norm(map_points(h, landmark_after) - landmark_before) < 0.3
    # warpPerspective(after, H) puts AFTER into BEFORE's frame.
    aligned = warp_to_before(after, h, before.shape[:2]).astype(np.float32)
    common = coverage_mask(h, after.shape[:2], before.shape[:2])
    common = cv2.erode(common.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    diff = np.abs(aligned - before.astype(np.float32)).mean(axis=2)[common]
    assert np.median(diff) < 3.0


# --------------------------------------------------------------------------- photometric


def test_colour_correction_keeps_the_disease_change() -> None:
    # BEFORE has lesions; in AFTER they have healed, and the camera's white balance and
    # exposure changed. The fitted correction must undo the camera, not the healing.
    healed, lab_healed = _world_without_lesions(13)
    p = _pair(13, after_world=(healed, lab_healed), rot=6.0, scale=1.05)
    gains = (1.25, 1.05, 0.8)
    after = _relight(p["after"], gains, 0.2)
    reg = register(p["before"], after, before_labels=p["before_labels"], after_labels=p["after_labels"])
    assert reg.status == "ok" and reg.photometric is not None
    corrected = apply_photometric(warp_to_before(after, reg.homography, p["before"].shape[:2]), reg).astype(np.float32)
    before = p["before"].astype(np.float32)
    common = cv2.erode(coverage_mask(reg.homography, after.shape[:2], before.shape[:2]).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    lab_b = p["before_labels"]
    healthy = common & (lab_b == SKIN)
    resolved = common & (cv2.erode((lab_b == LESION).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)
    assert resolved.sum() > 500
    # Healthy skin: the camera change is undone.
    assert np.median(np.abs(corrected - before)[healthy]) < 5.0
    # Resolved lesions: still as un-red as healthy skin, not pushed back to BEFORE's redness.
    redness = lambda im, m: float(np.median(im[..., 0][m] - im[..., 1][m]))  # noqa: E731
    assert redness(corrected, resolved) < redness(before, healthy) + 8
    assert redness(before, resolved) > redness(corrected, resolved) + 15
    assert reg.to_dict()["photometric"]["inlier_fraction"] > 0.5


def test_apply_photometric_checks_the_frame() -> None:
    p = _pair(14, rot=4.0)
    reg = register(p["before"], p["after"])
    out_after = apply_photometric(p["after"], reg, frame="after")
    assert out_after.shape == p["after"].shape and out_after.dtype == np.uint8
    with pytest.raises(ValueError):
        apply_photometric(p["after"][:100], reg, frame="after")


# --------------------------------------------------------------------------- non-rigid


def _bend(img: np.ndarray, amp: float, nearest: bool = False) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mx = xx + amp * np.sin(2 * np.pi * yy / h * 1.2)
    my = yy + amp * np.cos(2 * np.pi * xx / w * 0.9)
    return cv2.remap(img, mx, my, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _agreement(reg: object, p: dict[str, np.ndarray], after_labels: np.ndarray) -> float:
    h, disp = reg.homography, reg.displacement  # type: ignore[attr-defined]
    aligned = warp_to_before(after_labels, h, p["before"].shape[:2], nearest=True, displacement=disp)
    common = coverage_mask(h, after_labels.shape, p["before"].shape[:2], displacement=disp)
    return float(((aligned == p["before_labels"]) & common).sum() / common.sum())


def test_nonrigid_field_follows_a_bent_body() -> None:
    p = _pair(15, rot=5.0, scale=1.1)
    after, lab_a = _bend(p["after"], 4.0), _bend(p["after_labels"], 4.0, nearest=True)
    rigid = register(p["before"], after)
    bent = register(p["before"], after, options=RegistrationOptions(nonrigid=True))
    assert rigid.displacement is None and isinstance(bent.displacement, Displacement)
    assert _agreement(bent, p, lab_a) > _agreement(rigid, p, lab_a) + 0.01
    assert bent.quality["nonrigid"]["p95_px"] > 2.0
    full = bent.displacement.full_resolution()
    assert full.shape == (2, *p["before"].shape[:2]) and full.dtype == np.float32


def test_nonrigid_field_is_near_zero_for_a_flat_scene() -> None:
    p = _pair(16, rot=5.0, scale=1.1)
    reg = register(p["before"], p["after"], options=RegistrationOptions(nonrigid=True))
    assert reg.displacement is not None
    assert reg.quality["nonrigid"]["p95_px"] < 0.3


def test_zero_displacement_warps_like_the_homography() -> None:
    p = _pair(17, rot=5.0)
    reg = register(p["before"], p["after"])
    zero = Displacement(np.zeros((2, 30, 40), np.float32), tuple(p["before"].shape[:2]))
    a = warp_to_before(p["after"], reg.homography, p["before"].shape[:2]).astype(np.int16)
    b = warp_to_before(p["after"], reg.homography, p["before"].shape[:2], displacement=zero).astype(np.int16)
    assert np.abs(a - b).max() <= 1


# --------------------------------------------------------------------------- through the command line


def test_analyze_nonrigid_writes_the_field_and_both_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = _pair(18, rot=6.0, scale=1.1)
    paths = {}
    for name in ("before", "after"):
        paths[name] = tmp_path / f"{name}.png"
        cv2.imwrite(str(paths[name]), p[name][:, :, ::-1])
    out = tmp_path / "out"
    assert main(["analyze", str(paths["before"]), str(paths["after"]), "-o", str(out), "--nonrigid"]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["registration"]["status"] == "ok"
    assert doc["settings"]["registration"]["nonrigid"] is True
    nr = doc["nonrigid"]
    assert nr["displacement_file"] == "displacement.npz"
    assert set(nr["change_homography_only"]) == set(doc["metrics"]["change"])
    field = Displacement.from_npz(out / "displacement.npz")
    assert field.before_shape == p["before"].shape[:2]
    h = np.array(doc["registration"]["homography"])
    assert corner_error(h, p["h"], p["after"].shape) < 0.5
    # Without the flag: no field, no nonrigid section.
    out2 = tmp_path / "out2"
    assert main(["analyze", str(paths["before"]), str(paths["after"]), "-o", str(out2)]) == 0
    assert not (out2 / "displacement.npz").exists()
    assert "nonrigid" not in json.loads((out2 / "result.json").read_text())


def test_register_command_refuses_save_without_nonrigid(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    p = _pair(19)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), p["before"])
    assert main(["register", str(path), str(path), "--save-displacement", str(tmp_path / "d.npz")]) == 2
    assert "--nonrigid" in capsys.readouterr().err


def test_nonrigid_csv_columns_do_not_depend_on_the_registration() -> None:
    # With --nonrigid, a failed registration keeps every column of a successful one.
    from imgtool.pipeline import AnalysisOptions, analyze_pair
    from imgtool.report import metrics_row

    p = _pair(23, rot=4.0)
    opts = AnalysisOptions(method="classical", registration=RegistrationOptions(nonrigid=True))
    ok = analyze_pair(p["before"], p["after"], options=opts)
    failed = analyze_pair(p["before"], _pair(24)["after"], options=opts)
    assert ok.registration.status == "ok" and failed.registration.status == "failed"
    cols = [[k for k in metrics_row(r) if not k.startswith("registration.quality")] for r in (ok, failed)]
    assert cols[0] == cols[1]
    assert "nonrigid.change_effect.new_lesion_px" in cols[0]
    assert metrics_row(failed)["registration.photometric.matrix.00"] is None



@pytest.mark.parametrize("nonrigid", [False, True])
def test_warp_map_to_before_samples_where_the_full_warp_does(nonrigid: bool) -> None:
    # A smooth map over AFTER's frame, known at a quarter of its resolution.
    ha, wa, hb, wb = 300, 400, 280, 420
    yy, xx = np.mgrid[0:ha, 0:wa].astype(np.float32)
    full = np.sin(xx / 37.0) + np.cos(yy / 23.0)
    small = cv2.resize(full, (wa // 4, ha // 4), interpolation=cv2.INTER_AREA)
    h = np.array([[0.97, 0.05, 12.0], [-0.04, 1.02, -7.0], [2e-5, -1e-5, 1.0]])
    disp = None
    if nonrigid:
        g = np.mgrid[0:14, 0:21].astype(np.float32)
        disp = Displacement(np.stack([3.0 * np.sin(g[1] / 4.0), 2.0 * np.cos(g[0] / 3.0)]), (hb, wb))
    ref = warp_to_before(full, h, (hb, wb), displacement=disp)
    covered = warp_to_before(np.ones((ha, wa), np.uint8), h, (hb, wb), nearest=True, displacement=disp).astype(bool)
    out = warp_map_to_before(small, h, (ha, wa), (hb, wb), (hb // 4, wb // 4), displacement=disp)
    assert out.shape == (hb // 4, wb // 4) and out.dtype == np.float32
    ref_small = cv2.resize(ref, (wb // 4, hb // 4), interpolation=cv2.INTER_AREA)
    inside = cv2.erode(covered.astype(np.uint8), np.ones((13, 13), np.uint8))[2::4, 2::4][: hb // 4, : wb // 4].astype(bool)
    assert inside.mean() > 0.5
    assert np.abs(out - ref_small)[inside].max() < 0.05  # the map spans [-2, 2]
    assert (out[0, 0] == 0.0) or covered[0, 0]  # outside AFTER: 0
