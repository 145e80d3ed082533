"""Metrics against hand-built masks: areas, EASI bins, SALT, lesion objects and fates, redness."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from imgtool.labels import BACKGROUND, HAIR, LESION, SKIN
from imgtool.quantify import (
    reconcile_hair_labels,
    FATE_NEW,
    FATE_PERSISTENT,
    FATE_RESOLVED,
    SALT_WEIGHTS,
    change_metrics,
    easi_area_score,
    find_lesions,
    lesion_fates,
    lesion_metrics,
    photo_metrics,
    reconcile_lesion_labels,
    redness,
    redness_change,
    salt_score,
)
from imgtool.salt import score_salt_views

# --------------------------------------------------------------------------- per-photo fields


def test_photo_fields_hand_counted() -> None:
    lab = np.zeros((10, 10), np.uint8)
    lab[0:8, :] = SKIN  # 80 body pixels
    lab[0:2, 0:6] = LESION  # 12 lesion
    lab[6:8, :] = HAIR  # 20 hair
    m = photo_metrics(lab, pixel_size_mm=0.5)
    assert (m.skin_area_px, m.lesion_area_px, m.hair_area_px, m.roi_area_px) == (60, 12, 20, 80)
    assert m.body_area_px == 80
    assert m.lesion_share_of_body == pytest.approx(12 / 80)
    assert m.lesion_fraction == pytest.approx(12 / 60)
    assert m.easi_area_score == 2  # 15 % of the region
    assert m.hair_loss_percent == pytest.approx(100 * 60 / 80)
    d = m.to_dict()
    assert d["lesion_area_mm2"] == pytest.approx(12 * 0.25)
    assert d["lesion_area_cm2"] == pytest.approx(12 * 0.25 / 100)
    assert d["body_area_cm2"] == pytest.approx(80 * 0.25 / 100)
    assert "lesion_area_cm2" not in photo_metrics(lab).to_dict()


def test_user_roi_counts_background_as_hairless() -> None:
    # SALT: hair loss is the share of the scalp (the ROI) without hair, whatever is not hair.
    lab = np.full((10, 10), HAIR, np.uint8)
    lab[:, 7:] = BACKGROUND
    roi = np.zeros((10, 10), bool)
    roi[:, 5:] = True  # 50 px: 20 hair, 30 background
    m = photo_metrics(lab, roi=roi)
    assert m.hair_loss_percent == pytest.approx(60.0)
    assert m.body_area_px == 20


def test_empty_masks() -> None:
    blank = np.zeros((8, 8), np.uint8)
    m = photo_metrics(blank)
    assert m.roi_area_px == 0 and m.body_area_px == 0
    assert m.lesion_share_of_body is None and m.easi_area_score is None and m.hair_loss_percent is None
    healthy = np.full((8, 8), SKIN, np.uint8)
    m = photo_metrics(healthy)
    assert m.easi_area_score == 0 and m.lesion_share_of_body == 0.0 and m.hair_loss_percent == 100.0
    assert find_lesions(healthy).count == 0
    fates = lesion_fates(healthy, healthy)
    assert fates.items == () and fates.to_dict()["resolved"] == 0


# --------------------------------------------------------------------------- EASI bins


@pytest.mark.parametrize(
    "lesion_px, score",
    [
        (0, 0), (1, 1), (99, 1), (100, 2), (299, 2), (300, 3), (499, 3),
        (500, 4), (699, 4), (700, 5), (899, 5), (900, 6), (999, 6), (1000, 6),
    ],  # fmt: skip
)
def test_easi_bin_edges_from_masks(lesion_px: int, score: int) -> None:
    # A region of exactly 1000 body pixels, lesion_px of them lesion.
    flat = np.full(1000, SKIN, np.uint8)
    flat[:lesion_px] = LESION
    lab = np.vstack([flat.reshape(20, 50), np.zeros((5, 50), np.uint8)])
    m = photo_metrics(lab)
    assert m.body_area_px == 1000
    assert m.easi_area_score == score


def test_easi_counts_only_lesions_of_the_minimum_size() -> None:
    # 1000 body pixels: one 12x10 lesion (120 px, 12 %) and five 2x2 specks (20 px).
    lab = np.full((20, 50), SKIN, np.uint8)
    lab[2:12, 2:14] = LESION
    for x in (20, 26, 32, 38, 44):
        lab[15:17, x : x + 2] = LESION
    every = photo_metrics(lab)
    assert every.lesion_area_px == 140 and every.easi_area_score == 2 and every.easi_share_of_body == pytest.approx(0.14)
    assert every.easi_min_lesion_area_px is None
    m = photo_metrics(lab, min_lesion_area_px=10)
    assert m.lesion_area_px == 140 and m.lesion_share_of_body == pytest.approx(0.14)  # the areas still count every pixel
    assert m.easi_share_of_body == pytest.approx(0.12) and m.easi_area_score == 2 and m.easi_min_lesion_area_px == 10
    # A photo whose only "lesion" is specks below the minimum scores 0, not 1.
    specks = lab.copy()
    specks[2:12, 2:14] = SKIN
    m = photo_metrics(specks, min_lesion_area_px=10)
    assert m.lesion_area_px == 20 and m.easi_share_of_body == 0.0 and m.easi_area_score == 0
    assert photo_metrics(specks).easi_area_score == 1
    assert m.to_dict()["easi_min_lesion_area_px"] == 10 and m.to_dict()["easi_share_of_body"] == 0.0
    # A speck outside the ROI never counts; a lesion of exactly the minimum does.
    assert photo_metrics(lab, min_lesion_area_px=120).easi_share_of_body == pytest.approx(0.12)
    roi = np.ones_like(lab, bool)
    roi[:, :8] = False  # cuts the lesion to 10x6 = 60 px inside the ROI
    assert photo_metrics(lab, roi=roi, min_lesion_area_px=61).easi_area_score == 0
    with pytest.raises(ValueError):
        photo_metrics(lab, min_lesion_area_px=-1)


@pytest.mark.parametrize("min_area", [0, 1, 5, 30, 200])
def test_easi_share_counts_the_lesions_find_lesions_keeps(min_area: int) -> None:
    # Random blobs of every size, some cut by the ROI: the EASI share's lesion pixels
    # are exactly those of the lesions find_lesions lists with the same minimum.
    rng = np.random.default_rng(7)
    lab = np.full((120, 160), SKIN, np.uint8)
    noise = cv2.GaussianBlur(rng.random((120, 160)).astype(np.float32), (0, 0), 2.0)
    lab[noise > np.quantile(noise, 0.8)] = LESION
    lab[rng.random((120, 160)) < 0.01] = LESION  # single-pixel specks
    lab[:5] = BACKGROUND
    roi = np.ones_like(lab, bool)
    roi[:, 150:] = False
    m = photo_metrics(lab, roi=roi, min_lesion_area_px=min_area)
    les = find_lesions(lab, roi=roi, min_area_px=min_area)
    body = int(np.isin(lab[roi], (SKIN, LESION, HAIR)).sum())
    assert m.easi_share_of_body == pytest.approx(sum(x.area_px for x in les.items) / body)
    assert les.items and (min_area < 2 or len(les.items) < len(find_lesions(lab, roi=roi).items))


def test_easi_function_edges_and_errors() -> None:
    assert [easi_area_score(s) for s in (0.0, 1e-9, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)] == [0, 1, 2, 3, 4, 5, 6, 6]
    assert [easi_area_score(s) for s in (0.0999, 0.2999, 0.4999, 0.6999, 0.8999)] == [1, 2, 3, 4, 5]
    assert easi_area_score(None) is None
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError):
            easi_area_score(bad)


# --------------------------------------------------------------------------- SALT


def test_salt_weighted_sum() -> None:
    s = salt_score({"top": 100.0, "back": 50.0, "left": 25.0, "right": 0.0})
    assert s.score == pytest.approx(40 + 12 + 4.5 + 0)
    assert salt_score({v: 100.0 for v in SALT_WEIGHTS}).score == pytest.approx(100.0)
    assert salt_score({v: 0.0 for v in SALT_WEIGHTS}).score == 0.0
    assert sum(SALT_WEIGHTS.values()) == pytest.approx(1.0)
    assert s.to_dict()["views"]["back"] == {"hair_loss_percent": 50.0, "weight": 0.24}


@pytest.mark.parametrize(
    "views",
    [
        {"top": 1.0, "back": 1.0, "left": 1.0},
        {"top": 1.0, "back": 1.0, "left": 1.0, "right": 1.0, "front": 1.0},
        {"top": 101.0, "back": 1.0, "left": 1.0, "right": 1.0},
        {"top": None, "back": 1.0, "left": 1.0, "right": 1.0},
    ],
)
def test_salt_rejects_bad_views(views: dict) -> None:
    with pytest.raises(ValueError):
        salt_score(views)


def test_salt_views_from_label_maps_and_masks() -> None:
    maps, masks = {}, {}
    for k, view in enumerate(("top", "back", "left", "right")):
        lab = np.full((20, 20), HAIR, np.uint8)
        lab[: 5 * k, :] = SKIN  # 0, 25, 50, 75 % hair loss over the whole image
        maps[view] = lab
        scalp = np.zeros((20, 20), bool)
        scalp[:10, :] = True  # scalp = top half: 0, 50, 100, 100 % hair loss inside it
        masks[view] = scalp
    whole = score_salt_views(maps, labels_given=True)
    assert whole.salt.hair_loss_percent == {"top": 0.0, "back": 25.0, "left": 50.0, "right": 75.0}
    assert whole.salt.score == pytest.approx(0.24 * 25 + 0.18 * 50 + 0.18 * 75)
    scalp = score_salt_views(maps, scalp_masks=masks, labels_given=True)
    assert scalp.salt.hair_loss_percent == {"top": 0.0, "back": 50.0, "left": 100.0, "right": 100.0}
    assert scalp.to_dict()["salt_score"] == pytest.approx(0.24 * 50 + 0.18 * 100 + 0.18 * 100)


_ALONET = re.compile(r"^(?P<case>\d+)\.(?P<patient>\d+)\.(?P<date>\d{6})\.(?P<view>\d)_scalp\.gif$")


def test_hair_loss_share_on_real_alopecia_annotations(shared_data: Path) -> None:
    """Hair loss per visit and view, |hairloss & scalp| / |scalp|, from label maps built
    from real expert masks (AloNet), reproduced by photo_metrics and the SALT code."""
    folder = shared_data / "alonet_alopecia_masks"
    if not folder.is_dir():
        pytest.skip("alonet_alopecia_masks not available")
    pairs = sorted(p for p in folder.glob("*_scalp.gif") if _ALONET.match(p.name))
    patient = "15189537"
    visits = [p for p in pairs if _ALONET.match(p.name)["patient"] == patient]
    if not visits:
        pytest.skip("no annotations of the first patient")
    by_date: dict[str, dict[str, float]] = {}
    # One patient's visits, view 4 only (and every view of two dates), keep it quick.
    dates = sorted({_ALONET.match(p.name)["date"] for p in visits})
    chosen = [p for p in visits if _ALONET.match(p.name)["view"] == "4" or _ALONET.match(p.name)["date"] in dates[:2]]
    assert len(chosen) >= 8
    for scalp_path in chosen:
        m = _ALONET.match(scalp_path.name)
        scalp = np.asarray(Image.open(scalp_path)) > 0
        loss = np.asarray(Image.open(scalp_path.with_name(scalp_path.name.replace("_scalp", "_hairloss")))) > 0
        expected = 100.0 * np.count_nonzero(loss & scalp) / np.count_nonzero(scalp)
        # Label map: outside the scalp background, hair-loss skin, the rest of the scalp hair.
        lab = np.where(scalp, np.where(loss, SKIN, HAIR), BACKGROUND).astype(np.uint8)
        assert photo_metrics(lab).hair_loss_percent == pytest.approx(expected, abs=1e-9)
        assert photo_metrics(lab, roi=scalp).hair_loss_percent == pytest.approx(expected, abs=1e-9)
        # A hair-loss mask that leaks outside the scalp must not count outside it.
        leaky = np.where(loss, SKIN, np.where(scalp, HAIR, BACKGROUND)).astype(np.uint8)
        assert photo_metrics(leaky, roi=scalp).hair_loss_percent == pytest.approx(expected, abs=1e-9)
        by_date.setdefault(m["date"], {})[m["view"]] = expected
    assert all(0.0 <= v <= 100.0 for d in by_date.values() for v in d.values())
    # The weighted sum over four real views (assigned to top/back/left/right in view-number
    # order: AloNet does not publish which number is which direction) is the SALT arithmetic.
    full = next((d for d in by_date.values() if len(d) >= 4), None)
    if full is not None:
        four = dict(zip(SALT_WEIGHTS, (full[v] for v in sorted(full)[:4])))
        assert salt_score(four).score == pytest.approx(sum(SALT_WEIGHTS[v] * four[v] for v in SALT_WEIGHTS))


# --------------------------------------------------------------------------- lesions as objects


def _square(lab: np.ndarray, x: int, y: int, side: int, value: int = LESION) -> None:
    lab[y : y + side, x : x + side] = value


def test_find_lesions_counts_areas_centroids() -> None:
    lab = np.full((60, 80), SKIN, np.uint8)
    _square(lab, 5, 5, 10)  # 100 px, centre (9.5, 9.5)
    _square(lab, 40, 30, 6)  # 36 px, centre (42.5, 32.5)
    _square(lab, 70, 50, 2)  # 4 px
    les = find_lesions(lab, pixel_size_mm=0.1)
    assert les.count == 3
    assert [x.area_px for x in les.items] == [100, 36, 4]
    assert [x.id for x in les.items] == [1, 2, 3]
    assert (les.items[0].centroid_x, les.items[0].centroid_y) == pytest.approx((9.5, 9.5))
    assert (les.items[1].centroid_x, les.items[1].centroid_y) == pytest.approx((42.5, 32.5))
    assert les.items[1].bbox == (40, 30, 6, 6)
    assert les.components[32, 42] == 2 and les.components[0, 0] == 0
    d = les.to_dict()
    assert d["count"] == 3 and d["total_area_px"] == 140
    assert d["items"][0]["area_mm2"] == pytest.approx(1.0) and d["items"][0]["area_cm2"] == pytest.approx(0.01)
    big = find_lesions(lab, min_area_px=5)
    assert big.count == 2 and big.components[50, 70] == 0
    roi = np.zeros(lab.shape, bool)
    roi[:, :10] = True  # cuts the first square to 10 x 5
    assert [x.area_px for x in find_lesions(lab, roi=roi).items] == [50]


def test_diagonal_neighbours_are_one_lesion() -> None:
    lab = np.full((10, 10), SKIN, np.uint8)
    lab[2, 2] = lab[3, 3] = lab[4, 4] = LESION
    assert find_lesions(lab).count == 1


def _fate_of(fates, before_id):  # noqa: ANN001, ANN202 - tiny test helper
    return next(f for f in fates.items if f.before_id == before_id)


def test_fates_resolved_persistent_new() -> None:
    before = np.full((100, 100), SKIN, np.uint8)
    after = before.copy()
    _square(before, 10, 10, 20)  # 1: 400 px, shrinks to 10 x 10 inside its outline
    _square(after, 15, 15, 10)
    _square(before, 60, 10, 15)  # 2: 225 px, resolves
    _square(before, 10, 60, 10)  # 3: 100 px, persists and grows to 12 x 12
    _square(after, 9, 59, 12)
    _square(after, 70, 70, 8)  # new: 64 px, far from everything
    fates = lesion_fates(before, after)
    assert fates.before.count == 3 and fates.after.count == 3
    f1, f2, f3 = (_fate_of(fates, i) for i in (1, 2, 3))
    assert (f1.fate, f1.area_before_px, f1.area_after_px) == (FATE_PERSISTENT, 400, 100)
    assert f1.area_change_rel == pytest.approx(-0.75)
    assert (f2.fate, f2.area_after_px, f2.area_change_rel) == (FATE_RESOLVED, 0, -1.0)
    assert (f3.fate, f3.area_after_px) == (FATE_PERSISTENT, 144)
    assert f3.area_change_rel == pytest.approx(0.44)
    new = [f for f in fates.items if f.fate == FATE_NEW]
    assert len(new) == 1 and new[0].area_after_px == 64 and new[0].before_id is None
    assert (new[0].centroid_x, new[0].centroid_y) == pytest.approx((73.5, 73.5))
    d = fates.to_dict()
    assert (d["resolved"], d["persistent"], d["new"]) == (1, 2, 1)


def test_new_lesion_touching_an_old_one_is_new() -> None:
    before = np.full((80, 80), SKIN, np.uint8)
    after = before.copy()
    _square(before, 10, 10, 20)  # 400 px, shrinks to 10 x 10
    _square(after, 10, 10, 10)
    _square(after, 29, 29, 20)  # a new 400 px lesion sharing one corner pixel with the old outline
    fates = lesion_fates(before, after)
    assert fates.after.count == 2
    assert sorted(f.fate for f in fates.items) == [FATE_NEW, FATE_PERSISTENT]
    assert _fate_of(fates, 1).area_after_px == 100
    # A 2-px BEFORE speck inside the new lesion links it (100 % of the smaller one) ...
    before[40, 40] = before[41, 40] = LESION
    fates = lesion_fates(before, after)
    assert [f.fate for f in fates.items] == [FATE_PERSISTENT, FATE_PERSISTENT]
    # ... unless the minimum lesion size removes the speck (under half of it: ignored).
    fates = lesion_fates(before, after, min_area_px=10)
    assert [f.fate for f in fates.items] == [FATE_PERSISTENT, FATE_NEW]


def test_min_area_has_hysteresis() -> None:
    # A lesion just above the minimum in one photo and just below it in the other is the
    # same lesion, not a resolved one plus nothing (or nothing plus a new one).
    before = np.full((60, 120), SKIN, np.uint8)
    after = before.copy()
    _square(before, 10, 10, 10)  # 100 px at month 0 ...
    _square(after, 10, 10, 9)  # ... 81 px at follow-up: below a 90 px minimum
    _square(before, 50, 10, 9)  # 81 px at month 0, 100 px at follow-up
    _square(after, 50, 10, 10)
    _square(before, 90, 10, 6)  # 36 px in both: under half the minimum, ignored
    _square(after, 90, 10, 6)
    fates = lesion_fates(before, after, min_area_px=90)
    assert [f.fate for f in fates.items] == [FATE_PERSISTENT, FATE_PERSISTENT]
    assert sorted(f.area_before_px for f in fates.items) == [81, 100]
    assert sorted(f.area_after_px for f in fates.items) == [81, 100]
    assert fates.before.count == fates.after.count == 2
    # Without the partner, the same lesions are resolved and new.
    after[10:20, 10:20] = SKIN
    before[10:20, 50:60] = SKIN
    assert sorted(f.fate for f in lesion_fates(before, after, min_area_px=90).items) == [FATE_NEW, FATE_RESOLVED]


def _fate_at(fates, x: float, y: float):  # noqa: ANN001, ANN202 - tiny test helper
    return next(f for f in fates.items if abs(f.centroid_x - x) < 1 and abs(f.centroid_y - y) < 1)


def test_merge_and_split_share_area_by_overlap() -> None:
    before = np.full((60, 100), SKIN, np.uint8)
    after = before.copy()
    _square(before, 10, 10, 10)  # 1 and 2 merge into one AFTER lesion
    _square(before, 30, 10, 10)
    after[10:20, 10:40] = LESION  # 300 px, overlaps 100 with each
    _square(before, 60, 10, 20)  # 3 splits into two AFTER lesions inside it
    _square(after, 60, 10, 8)
    _square(after, 72, 22, 8)
    fates = lesion_fates(before, after)
    f1, f2, f3 = _fate_at(fates, 14.5, 14.5), _fate_at(fates, 34.5, 14.5), _fate_at(fates, 69.5, 19.5)
    assert f1.fate == f2.fate == f3.fate == FATE_PERSISTENT
    assert f1.after_ids == f2.after_ids
    assert f1.area_after_px == pytest.approx(150) and f2.area_after_px == pytest.approx(150)
    assert len(f3.after_ids) == 2 and f3.area_after_px == pytest.approx(128)
    total_after = sum(f.area_after_px for f in fates.items)
    assert total_after == pytest.approx(int((after == LESION).sum()))


def test_fates_only_inside_common_region() -> None:
    before = np.full((40, 80), SKIN, np.uint8)
    after = before.copy()
    _square(before, 5, 5, 10)  # outside AFTER's coverage: neither resolved nor counted
    _square(before, 50, 5, 10)
    _square(after, 50, 5, 10)
    common = np.zeros(before.shape, bool)
    common[:, 40:] = True
    fates = lesion_fates(before, after, common=common)
    assert fates.before.count == 1 and [f.fate for f in fates.items] == [FATE_PERSISTENT]


def test_lesion_metrics_scales_min_area_into_after_frame() -> None:
    before = np.full((50, 50), SKIN, np.uint8)
    after = before.copy()
    _square(before, 5, 5, 6)  # 36 px
    _square(after, 5, 5, 3)  # 9 px: the same size if AFTER is at half the scale (1 AFTER px = 2 BEFORE px)
    m = lesion_metrics(before, after, min_area_px=30, after_scale=2.0)
    assert m.before.count == 1 and m.after.count == 1 and m.after.min_area_px == 8
    assert m.fates is None and m.to_dict()["fates"] is None


# --------------------------------------------------------------------------- redness


def _lab_a(rgb: tuple[int, int, int]) -> float:
    return float(cv2.cvtColor(np.array([[rgb]], np.float32) / 255.0, cv2.COLOR_RGB2LAB)[0, 0, 1])


def _ei(rgb: tuple[int, int, int]) -> float:
    lin = [((c / 255 + 0.055) / 1.055) ** 2.4 if c / 255 > 0.04045 else c / 255 / 12.92 for c in rgb]
    return 100.0 * np.log10(lin[0] / lin[1])


def test_redness_relative_to_nearby_skin() -> None:
    skin, les, far = (200, 160, 140), (205, 110, 110), (120, 170, 120)
    img = np.zeros((200, 200, 3), np.uint8)
    img[:] = skin
    img[:, 150:] = far  # healthy but far from the lesion: outside the reference ring
    lesion = np.zeros((200, 200), bool)
    lesion[80:110, 40:70] = True
    img[lesion] = les
    healthy = ~lesion
    r = redness(img, lesion, healthy, ring_px=30, gap_px=3)
    assert r.lesion_px == 900
    assert r.lesion_a == pytest.approx(_lab_a(les), abs=1e-3)
    assert r.reference_a == pytest.approx(_lab_a(skin), abs=1e-3)
    assert r.delta_a == pytest.approx(_lab_a(les) - _lab_a(skin), abs=1e-3)
    assert r.delta_ei == pytest.approx(_ei(les) - _ei(skin), abs=1e-3)
    assert r.delta_a > 10
    # No lesion: nothing measured; no healthy skin nearby: no reference.
    none = redness(img, np.zeros_like(lesion), healthy)
    assert none.lesion_px == 0 and none.delta_a is None
    alone = redness(img, lesion, np.zeros_like(lesion))
    assert alone.lesion_a is not None and alone.reference_px == 0 and alone.delta_a is None


def test_redness_change_at_month0_sites() -> None:
    skin, les = (200, 160, 140), (205, 110, 110)
    before = np.zeros((120, 120, 3), np.uint8)
    before[:] = skin
    lab_b = np.full((120, 120), SKIN, np.uint8)
    lab_b[50:70, 50:70] = LESION
    before[lab_b == LESION] = les
    # AFTER: the lesion faded to half its redness, the segmenter no longer sees it.
    half = tuple(int(round((a + b) / 2)) for a, b in zip(skin, les))
    after = before.copy()
    after[lab_b == LESION] = half
    lab_a = np.full((120, 120), SKIN, np.uint8)
    ch = redness_change(before, lab_b, after, lab_a, after_aligned=after, after_labels_aligned=lab_a)
    assert ch.after.lesion_px == 0 and ch.after.delta_a is None
    assert ch.sites_before.delta_a == pytest.approx(_lab_a(les) - _lab_a(skin), abs=1e-3)
    assert ch.sites_after.delta_a == pytest.approx(_lab_a(half) - _lab_a(skin), abs=1e-3)
    d = ch.to_dict()
    assert d["site_delta_a_change"] == pytest.approx(_lab_a(half) - _lab_a(les), abs=1e-3)
    assert d["site_delta_a_change"] < -5
    assert d["after_colour"] == "as photographed"
    unaligned = redness_change(before, lab_b, after, lab_a)
    assert unaligned.sites_after is None and unaligned.to_dict()["site_delta_a_change"] is None


def test_hair_coverage_of_the_same_area() -> None:
    # BEFORE sees columns 0-7, AFTER (aligned) columns 2-9 of the same body: the per-photo
    # coverage changes with framing, the common-area coverage only with the hair.
    before = np.zeros((10, 10), np.uint8)
    before[:, :8] = SKIN
    before[:2, :8] = HAIR  # 16 px
    after = np.zeros((10, 10), np.uint8)
    after[:, 2:] = SKIN
    after[:4, 2:] = HAIR  # 32 px
    ch = change_metrics(photo_metrics(before), photo_metrics(after), before, after)
    assert ch.hair_coverage_before_common == pytest.approx(16 / 100)
    assert ch.hair_coverage_after_common == pytest.approx(32 / 100)
    assert ch.hair_coverage_change_common == pytest.approx(0.16)
    roi = np.zeros((10, 10), bool)
    roi[:, 2:8] = True  # a user ROI is the denominator as given: 60 px, 12 and 24 hair
    ch = change_metrics(photo_metrics(before), photo_metrics(after), before, after, roi=roi)
    assert (ch.hair_coverage_before_common, ch.hair_coverage_after_common) == pytest.approx((0.2, 0.4))
    unaligned = change_metrics(photo_metrics(before), photo_metrics(after), before, None)
    assert unaligned.hair_coverage_change_common is None


def test_salt_label_maps_are_checked(tmp_path: Path) -> None:
    from imgtool.errors import InputError, UsageError
    from imgtool.io import write_png

    good = np.full((16, 16), HAIR, np.uint8)
    bad_value = good.copy()
    bad_value[0, 0] = 7
    write_png(tmp_path / "bad_value.png", bad_value)
    write_png(tmp_path / "colour.png", np.dstack([good, good, good + 1]))
    write_png(tmp_path / "good.png", good)
    views = {v: tmp_path / "good.png" for v in SALT_WEIGHTS}
    assert score_salt_views(views, labels_given=True).salt.score == 0.0
    for bad in ("bad_value.png", "colour.png"):
        with pytest.raises(InputError):
            score_salt_views({**views, "left": tmp_path / bad}, labels_given=True)
    with pytest.raises(UsageError):
        score_salt_views({"top": tmp_path / "good.png"}, labels_given=True)
    with pytest.raises(InputError):  # an empty scalp mask
        score_salt_views(views, labels_given=True, scalp_masks={"top": np.zeros((16, 16), bool)})


# --------------------------------------------------------------------------- reconciling the aligned pair

SKIN_RGB = (205, 160, 140)


def _photo(lesions: list[tuple[int, int, int, tuple[int, int, int]]], seed: int, noise: float = 2.0) -> np.ndarray:
    """A 200x240 skin photo with filled discs (x, y, r, rgb) and sensor noise."""
    img = np.zeros((200, 240, 3), np.float64)
    img[:] = SKIN_RGB
    for x, y, r, rgb in lesions:
        cv2.circle(img, (x, y), r, rgb, -1)
    img += np.random.default_rng(seed).normal(0.0, noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _disc_labels(discs: list[tuple[int, int, int]]) -> np.ndarray:
    lab = np.full((200, 240), SKIN, np.uint8)
    lab[:, :10] = BACKGROUND
    for x, y, r in discs:
        cv2.circle(lab, (x, y), r, int(LESION), -1)
    return lab


def _rel(b: np.ndarray, a: np.ndarray) -> float:
    ch = change_metrics(photo_metrics(b), photo_metrics(a), b, a)
    assert ch.lesion_area_change_rel is not None
    return ch.lesion_area_change_rel


def test_reconcile_resets_label_noise_on_an_unchanged_photo() -> None:
    faint = (190, 140, 130)  # a faint lesion: about 9 Delta-E from the skin
    before = _photo([(80, 100, 25, faint), (170, 100, 20, faint)], seed=1)
    after = _photo([(80, 100, 25, faint), (170, 100, 20, faint)], seed=2)  # same skin, new noise
    lb = _disc_labels([(80, 100, 25), (170, 100, 20)])
    la = _disc_labels([(80, 100, 31), (170, 100, 14)])  # the segmenter's edges moved
    assert abs(_rel(lb, la)) > 0.1  # without reconciling: a large false change
    rec = reconcile_lesion_labels(before, after, lb, la)
    np.testing.assert_array_equal(rec.labels, lb)
    assert _rel(lb, rec.labels) == 0.0
    assert rec.new_kept_px == 0 and rec.resolved_kept_px == 0
    assert rec.new_reverted_px == int(((lb == SKIN) & (la == LESION)).sum())
    assert rec.resolved_reverted_px == int(((lb == LESION) & (la == SKIN)).sum())
    assert rec.residual_delta_e is not None and rec.residual_delta_e < 3.0


@pytest.mark.parametrize("lesion_rgb", [(150, 60, 60), (195, 148, 132)])  # strong, and faint (about 6 Delta-E)
def test_reconcile_keeps_real_change(lesion_rgb: tuple[int, int, int]) -> None:
    # Lesion 1 resolved, lesion 2 persisted, lesion 3 is new.
    before = _photo([(60, 60, 20, lesion_rgb), (150, 60, 20, lesion_rgb)], seed=3, noise=1.0)
    after = _photo([(150, 60, 20, lesion_rgb), (100, 150, 25, lesion_rgb)], seed=4, noise=1.0)
    lb = _disc_labels([(60, 60, 20), (150, 60, 20)])
    la = _disc_labels([(150, 60, 20), (100, 150, 25)])
    rec = reconcile_lesion_labels(before, after, lb, la)
    np.testing.assert_array_equal(rec.labels, la)
    assert rec.new_reverted_px == 0 and rec.resolved_reverted_px == 0
    assert rec.new_kept_px == int(((lb == SKIN) & (la == LESION)).sum())
    assert _rel(lb, rec.labels) == pytest.approx(_rel(lb, la))


def _lit(img: np.ndarray, x: int, y: int, sigma: float, gain: float) -> np.ndarray:
    """The photo under a local light: brightness times ``1 + gain`` at (x, y), a Gaussian falloff."""
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    g = 1.0 + gain * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2.0 * sigma**2))
    return np.clip(np.round(img * g[..., None]), 0, 255).astype(np.uint8)


def test_reconcile_nets_out_a_local_change_of_light() -> None:
    # Nothing changed on the left lesion, but a light 25 % brighter sits on it in AFTER
    # (no global or quadratic colour map undoes it); the segmenter moved its edge there.
    # On the right, a real new lesion appeared under the same kind of light.
    faint = (190, 140, 130)
    new_rgb = (165, 95, 90)
    before = _photo([(70, 100, 25, faint)], seed=21, noise=1.0)
    lit = _photo([(70, 100, 25, faint), (180, 100, 18, new_rgb)], seed=22, noise=1.0)
    after = _lit(_lit(lit, 70, 100, 45.0, 0.25), 180, 100, 45.0, 0.25)
    lb = _disc_labels([(70, 100, 25)])
    la = _disc_labels([(70, 100, 32), (180, 100, 18)])
    ring = (lb == SKIN) & (la == LESION) & (np.arange(240)[None, :] < 125)
    plain = reconcile_lesion_labels(before, after, lb, la, local_light=False)
    assert plain.local_light is False
    assert (plain.labels[ring] == LESION).all()  # the plain rule reads the light as a new ring of lesion
    rec = reconcile_lesion_labels(before, after, lb, la)
    assert rec.local_light is True and rec.to_dict()["local_light"] is True
    assert (rec.labels[ring] == SKIN).all() and (rec.before_labels[ring] == SKIN).all()
    new_lesion = (lb == SKIN) & (la == LESION) & ~ring
    assert (rec.labels[new_lesion] == LESION).all()
    assert rec.new_kept_px == int(new_lesion.sum()) and rec.new_reverted_px == int(ring.sum())


@pytest.mark.parametrize(("after_label", "kept"), [(SKIN, False), (HAIR, True)])
def test_reconcile_local_light_is_not_netted_out_where_the_other_photo_calls_hair(after_label: int, kept: bool) -> None:
    # At month 10 a band of the view, the faint lesion in it included, is darker: a
    # shadow, or fine regrowth over the whole band. Where the segmenter calls the lesion
    # skin, the darkening is the band's light and the lesion did not change (made to
    # agree); where it calls it hair, netting out the band's change would erase the hair
    # that grew over it, so the raw colour change decides (kept as a change).
    faint = (190, 140, 130)
    before = _photo([(150, 100, 30, faint)], seed=31, noise=1.0)
    after = _photo([(150, 100, 30, faint)], seed=32, noise=1.0).astype(np.float64)
    after[:, 100:200] *= 0.8
    after = np.clip(np.round(after), 0, 255).astype(np.uint8)
    lb = _disc_labels([(150, 100, 30)])
    la = _disc_labels([])
    la[lb == LESION] = after_label
    disc = int((lb == LESION).sum())
    assert reconcile_lesion_labels(before, after, lb, la, local_light=False).resolved_kept_px == disc
    rec = reconcile_lesion_labels(before, after, lb, la)
    assert rec.resolved_kept_px == (disc if kept else 0)
    assert rec.resolved_reverted_px == (0 if kept else disc)


HAIR_RGB = (70, 50, 40)


def _with_hair(img: np.ndarray, x0: int, noise_seed: int) -> np.ndarray:
    """The photo with dark hair over the columns from ``x0`` on (plus fresh noise there)."""
    out = img.astype(np.float64)
    out[:, x0:] = HAIR_RGB
    out[:, x0:] += np.random.default_rng(noise_seed).normal(0.0, 2.0, out[:, x0:].shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def test_reconcile_resets_lesion_hair_and_background_trades_on_an_unchanged_photo() -> None:
    # A faint lesion touching a hair-bearing area, next to the background strip; the
    # segmenter moved the lesion/hair border and called a strip of background lesion.
    faint = (190, 140, 130)
    before = _with_hair(_photo([(150, 100, 40, faint)], seed=11), 170, 1)
    after = _with_hair(_photo([(150, 100, 40, faint)], seed=12), 170, 2)
    lb = _disc_labels([(150, 100, 40)])
    lb[:, 170:] = HAIR
    la = lb.copy()
    la[:, 160:170][lb[:, 160:170] == LESION] = HAIR  # lesion -> hair
    la[:, 170:176][_disc_labels([(150, 100, 40)])[:, 170:176] == LESION] = LESION  # hair -> lesion
    la[40:60, :10] = LESION  # background -> lesion
    assert ((lb == LESION) != (la == LESION)).sum() > 300
    rec = reconcile_lesion_labels(before, after, lb, la)
    np.testing.assert_array_equal(rec.labels, lb)
    assert rec.new_kept_px == 0 and rec.resolved_kept_px == 0
    assert rec.new_reverted_px == int(((lb != LESION) & (la == LESION)).sum())
    assert rec.resolved_reverted_px == int(((lb == LESION) & (la != LESION)).sum())


def test_reconcile_keeps_hair_regrown_over_a_lesion() -> None:
    lesion = (160, 80, 75)
    before = _photo([(150, 100, 40, lesion)], seed=13)
    after = _with_hair(_photo([(150, 100, 40, lesion)], seed=14), 150, 3)  # hair over its right half
    lb = _disc_labels([(150, 100, 40)])
    la = lb.copy()
    la[:, 150:] = HAIR
    rec = reconcile_lesion_labels(before, after, lb, la)
    np.testing.assert_array_equal(rec.labels, la)
    assert rec.resolved_kept_px == int(((lb == LESION) & (la == HAIR)).sum()) > 2000
    assert rec.resolved_reverted_px == 0


def _evidence(labels: np.ndarray, weak: np.ndarray, sign: float) -> np.ndarray:
    """Lesion log-odds at half resolution: +4 on lesion, -4 elsewhere, ``sign`` * 1 on ``weak``."""
    ev = np.where(labels == LESION, 4.0, -4.0).astype(np.float32)
    ev[weak] = sign
    return cv2.resize(ev, (labels.shape[1] // 2, labels.shape[0] // 2), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ("ring_before", "ring_after", "want"),
    [(3.0, 1.0, LESION), (0.5, -4.0, SKIN)],  # averaged log-odds +2: lesion; -1.75: skin
)
def test_reconcile_with_evidence_labels_unchanged_regions_by_both_photos(ring_before: float, ring_after: float, want: int) -> None:
    # BEFORE's segmenter called a ring of unchanged skin around a faint lesion,
    # AFTER's did not; both photos' evidence decides what the ring is in both.
    faint = (190, 140, 130)
    before = _photo([(120, 100, 25, faint)], seed=21)
    after = _photo([(120, 100, 25, faint)], seed=22)
    lb = _disc_labels([(120, 100, 33)])
    la = _disc_labels([(120, 100, 25)])
    ring = (lb == LESION) & (la != LESION)
    ev_b = _evidence(lb, ring, ring_before)
    ev_a = _evidence(la, ring, ring_after)
    rec = reconcile_lesion_labels(before, after, lb, la, before_evidence=ev_b, after_evidence_aligned=ev_a)
    assert rec.evidence
    assert rec.resolved_kept_px == 0 and rec.resolved_reverted_px == int(ring.sum())
    assert (rec.labels[ring] == want).all() and (rec.before_labels[ring] == want).all()
    np.testing.assert_array_equal(rec.labels[~ring], la[~ring])
    np.testing.assert_array_equal(rec.before_labels[~ring], lb[~ring])
    n = int(ring.sum())
    assert (rec.agreed_lesion_px, rec.agreed_other_px) == ((n, 0) if want == LESION else (0, n))
    # The pair's change is nil either way: the lesion neither grew nor shrank.
    assert _rel(rec.before_labels, rec.labels) == 0.0


def test_reconcile_with_evidence_keeps_real_change_and_rejects_half_evidence() -> None:
    lesion = (150, 60, 60)
    before = _photo([(60, 60, 20, lesion)], seed=23, noise=1.0)
    after = _photo([(150, 60, 20, lesion)], seed=24, noise=1.0)
    lb = _disc_labels([(60, 60, 20)])
    la = _disc_labels([(150, 60, 20)])
    none = np.zeros(lb.shape, bool)
    ev_b, ev_a = _evidence(lb, none, 0.0), _evidence(la, none, 0.0)
    rec = reconcile_lesion_labels(before, after, lb, la, before_evidence=ev_b, after_evidence_aligned=ev_a)
    np.testing.assert_array_equal(rec.labels, la)
    np.testing.assert_array_equal(rec.before_labels, lb)
    assert rec.agreed_lesion_px == rec.agreed_other_px == 0
    with pytest.raises(ValueError, match="both photos or of neither"):
        reconcile_lesion_labels(before, after, lb, la, before_evidence=ev_b)
    with pytest.raises(ValueError, match="2-D"):
        reconcile_lesion_labels(before, after, lb, la, before_evidence=ev_b[None], after_evidence_aligned=ev_a)


def test_reconcile_only_inside_the_common_region_and_not_without_healthy_skin() -> None:
    faint = (190, 140, 130)
    img = _photo([(80, 100, 25, faint)], seed=5)
    img2 = _photo([(80, 100, 25, faint)], seed=6)
    lb = _disc_labels([(80, 100, 25)])
    la = _disc_labels([(80, 100, 32)])
    common = np.zeros(lb.shape, bool)
    common[:, :80] = True  # only the left half of the disagreement ring is shared
    rec = reconcile_lesion_labels(img, img2, lb, la, common=common)
    assert (rec.labels[:, :80] == lb[:, :80]).all()
    np.testing.assert_array_equal(rec.labels[:, 80:], la[:, 80:])
    # No skin healthy in both photos: no residual to judge by, nothing changes.
    all_lesion = np.full(lb.shape, LESION, np.uint8)
    rec = reconcile_lesion_labels(img, img2, all_lesion, np.full(lb.shape, SKIN, np.uint8))
    assert rec.residual_delta_e is None
    assert (rec.labels == SKIN).all()


def test_reconcile_rejects_bad_input() -> None:
    img = _photo([], seed=7)
    lab = _disc_labels([])
    with pytest.raises(ValueError, match="shape"):
        reconcile_lesion_labels(img, img[:100], lab, lab)
    with pytest.raises(ValueError, match="ratio"):
        reconcile_lesion_labels(img, img, lab, lab, ratio=1.5)


# --------------------------------------------------------------------------- hair reconciliation


def _hair_labels(x0: int) -> np.ndarray:
    lab = _disc_labels([])
    lab[:, x0:] = HAIR
    return lab


def _cov_change(b: np.ndarray, a: np.ndarray) -> float:
    ch = change_metrics(photo_metrics(b), photo_metrics(a), b, a)
    assert ch.hair_coverage_change_common is not None
    return ch.hair_coverage_change_common


def test_reconcile_hair_resets_edge_noise_on_an_unchanged_photo() -> None:
    before = _with_hair(_photo([], seed=21), 150, 1)
    after = _with_hair(_photo([], seed=22), 150, 2)  # the same scene, new noise
    lb = _hair_labels(150)
    la = _hair_labels(135)  # the segmenter called 15 columns of skin hair ...
    la[:60, 150:165] = SKIN  # ... and lost a corner of the hair
    assert abs(_cov_change(lb, la)) > 0.04  # 4.6 fraction points of false change
    rec = reconcile_hair_labels(before, after, lb, la)
    np.testing.assert_array_equal(rec.labels, lb)
    np.testing.assert_array_equal(rec.before_labels, lb)
    assert _cov_change(rec.before_labels, rec.labels) == 0.0
    assert rec.regrown_kept_px == 0 and rec.lost_kept_px == 0
    assert rec.regrown_reverted_px == 200 * 15 and rec.lost_reverted_px == 60 * 15
    assert rec.evidence is False and rec.residual_delta_e is not None


def test_reconcile_hair_keeps_real_regrowth_and_loss() -> None:
    # Hair regrew over columns 120..150 and was lost at the top of the old hair.
    before = _with_hair(_photo([], seed=23), 150, 3)
    after = _with_hair(_photo([], seed=24), 120, 4)
    after[:50, 200:] = _photo([], seed=25)[:50, 200:]
    lb, la = _hair_labels(150), _hair_labels(120)
    la[:50, 200:] = SKIN
    rec = reconcile_hair_labels(before, after, lb, la)
    np.testing.assert_array_equal(rec.labels, la)
    np.testing.assert_array_equal(rec.before_labels, lb)
    assert rec.regrown_kept_px == 200 * 30 and rec.lost_kept_px == 50 * 40
    assert rec.regrown_reverted_px == 0 and rec.lost_reverted_px == 0


@pytest.mark.parametrize(("ev_value", "want"), [(2.0, HAIR), (-2.0, SKIN)])
def test_reconcile_hair_with_evidence_labels_unchanged_regions_by_both_photos(ev_value: float, want: int) -> None:
    before = _with_hair(_photo([], seed=26), 150, 5)
    after = _with_hair(_photo([], seed=27), 150, 6)
    lb, la = _hair_labels(150), _hair_labels(150)
    la[:, 150:170] = SKIN  # AFTER lost the edge of the hair: the photos say it did not
    ev_b = np.where(_hair_labels(150) == HAIR, 3.0, -3.0).astype(np.float32)
    ev_b[:, 150:170] = ev_value  # what the two photos' evidence says about the disputed strip
    ev_a = ev_b.copy()
    rec = reconcile_hair_labels(before, after, lb, la, before_evidence=ev_b[::2, ::2], after_evidence_aligned=ev_a[::2, ::2])
    assert rec.evidence is True and rec.lost_reverted_px == 200 * 20
    assert (rec.labels[:, 150:170] == want).all() and (rec.before_labels[:, 150:170] == want).all()
    assert (rec.agreed_hair_px, rec.agreed_other_px) == ((200 * 20, 0) if want == HAIR else (0, 200 * 20))


def test_reconcile_hair_leaves_lesion_trades_and_rejects_bad_input() -> None:
    before = _with_hair(_photo([], seed=28), 150, 7)
    after = _with_hair(_photo([], seed=29), 150, 8)
    lb = _hair_labels(150)
    la = lb.copy()
    la[:, 150:160] = LESION  # hair -> lesion: reconcile_lesion_labels' business
    rec = reconcile_hair_labels(before, after, lb, la)
    np.testing.assert_array_equal(rec.labels, la)
    assert rec.lost_kept_px == rec.lost_reverted_px == 0
    with pytest.raises(ValueError, match="hair evidence of both photos"):
        reconcile_hair_labels(before, after, lb, la, before_evidence=np.zeros((10, 12), np.float32))
    with pytest.raises(ValueError, match="share BEFORE's shape"):
        reconcile_hair_labels(before, after[:100], lb, la)
