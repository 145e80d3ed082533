"""The analyze_pair API and the result.json contract: fields, types and invariants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgtool
from imgtool.labels import BACKGROUND, HAIR, LESION, SKIN
from imgtool.pipeline import AnalysisOptions
from imgtool.quantify import default_min_lesion_area_px, photo_metrics
from imgtool.registration import corner_error, map_points

PHOTO_FIELDS = {
    "skin_area_px": int,
    "lesion_area_px": int,
    "lesion_fraction": float,
    "roi_area_px": int,
    "hair_area_px": int,
    "hair_coverage": float,
    "hairless_area_px": int,
}
CHANGE_FIELDS = (
    "lesion_area_change_rel",
    "lesion_fraction_change",
    "hair_coverage_change",
    "new_lesion_px",
    "resolved_lesion_px",
    "persistent_lesion_px",
    "regrown_hair_px",
    "lost_hair_px",
)


@pytest.fixture(scope="module")
def analysis(scene_pair: dict) -> imgtool.PairAnalysis:
    return imgtool.analyze_pair(
        scene_pair["before"], scene_pair["after"], options=AnalysisOptions(method="classical", pixel_size_mm=0.2)
    )


def test_result_contract(analysis: imgtool.PairAnalysis, scene_pair: dict) -> None:
    doc = json.loads(imgtool.io.to_json(analysis.to_dict()))
    assert doc["schema_version"] == 1
    assert doc["imgtool_version"] == imgtool.__version__
    assert set(doc["model"]) >= {"name", "sha256"}
    for side in ("before", "after"):
        assert set(doc[side]) >= {"path", "width", "height", "sha256"}
        assert (doc[side]["width"], doc[side]["height"]) == (400, 300)
    reg = doc["registration"]
    assert set(reg) >= {"status", "homography", "method", "inlier_count", "quality"}
    assert reg["status"] in ("ok", "low_confidence", "failed")
    assert isinstance(reg["inlier_count"], int)
    for side in ("before", "after"):
        m = doc["metrics"][side]
        for key, typ in PHOTO_FIELDS.items():
            assert isinstance(m[key], typ), (side, key, m[key])
        assert 0 <= m["lesion_fraction"] <= 1 and 0 <= m["hair_coverage"] <= 1
        assert m["hairless_area_px"] == m["roi_area_px"] - m["hair_area_px"]
        assert m["lesion_area_px"] <= m["skin_area_px"] <= m["roi_area_px"]
        for key in ("skin_area", "lesion_area", "roi_area", "hair_area", "hairless_area"):
            assert f"{key}_mm2" in m
    assert doc["metrics"]["before"]["lesion_area_mm2"] == pytest.approx(doc["metrics"]["before"]["lesion_area_px"] * 0.04)
    ch = doc["metrics"]["change"]
    for key in CHANGE_FIELDS:
        assert key in ch
    assert ch["new_lesion_px"] + ch["persistent_lesion_px"] == ch["lesion_area_after_common_px"]
    assert ch["resolved_lesion_px"] + ch["persistent_lesion_px"] == ch["lesion_area_before_common_px"]
    b, a = doc["metrics"]["before"], doc["metrics"]["after"]
    assert ch["lesion_fraction_change"] == pytest.approx(a["lesion_fraction"] - b["lesion_fraction"])
    assert ch["hair_coverage_change"] == pytest.approx(a["hair_coverage"] - b["hair_coverage"])
    rel = (ch["lesion_area_after_common_px"] - ch["lesion_area_before_common_px"]) / ch["lesion_area_before_common_px"]
    assert ch["lesion_area_change_rel"] == pytest.approx(rel)


def test_reconciliation_recorded_and_switchable(analysis: imgtool.PairAnalysis, scene_pair: dict) -> None:
    doc = analysis.to_dict()
    assert doc["settings"]["reconcile"] is True
    rec = doc["metrics"]["reconciliation"]
    assert rec is not None and rec["residual_delta_e"] is not None
    assert rec["evidence"] is False  # the classical method has no lesion evidence
    ch = doc["metrics"]["change"]
    # Every lesion disagreement is judged; the ones that survived are the change.
    assert ch["resolved_lesion_px"] == rec["resolved_kept_px"]
    assert ch["new_lesion_px"] == rec["new_kept_px"]
    b, common = analysis.before_labels, analysis.common
    # Without evidence BEFORE keeps its own labels for the pair.
    np.testing.assert_array_equal(analysis.before_labels_pair, b)
    raw = imgtool.analyze_pair(
        scene_pair["before"], scene_pair["after"], options=AnalysisOptions(method="classical", pixel_size_mm=0.2, reconcile=False)
    )
    d2 = raw.to_dict()
    assert d2["settings"]["reconcile"] is False and d2["metrics"]["reconciliation"] is None
    # Reconciling only resets AFTER's labels to BEFORE's: it never adds a disagreement.
    assert ((analysis.after_labels_aligned != b) & common).sum() <= ((raw.after_labels_aligned != b) & common).sum()
    hrec = doc["metrics"]["reconciliation_hair"]
    assert hrec is not None and hrec["evidence"] is False and d2["metrics"]["reconciliation_hair"] is None
    assert hrec["regrown_reverted_px"] + hrec["lost_reverted_px"] > 0  # the scene's hair edges disagree
    n_reset = rec["new_reverted_px"] + rec["resolved_reverted_px"] + hrec["regrown_reverted_px"] + hrec["lost_reverted_px"]
    assert ((analysis.after_labels_aligned != raw.after_labels_aligned)).sum() == n_reset
    assert rec["agreed_lesion_px"] == rec["resolved_reverted_px"] and rec["agreed_other_px"] == rec["new_reverted_px"]
    assert hrec["agreed_hair_px"] == hrec["lost_reverted_px"] and hrec["agreed_other_px"] == hrec["regrown_reverted_px"]
    # Hair that survived is the regrown / lost hair (plus hair traded with lesion, judged as lesion).
    assert ch["regrown_hair_px"] >= hrec["regrown_kept_px"] and ch["lost_hair_px"] >= hrec["lost_kept_px"]


def test_cnn_reconciliation_uses_both_photos_evidence(tmp_path: Path) -> None:
    from imgtool.synth import render_pair

    pair = render_pair(5003, size=(320, 240), change="none")
    res = imgtool.analyze_pair(pair.before, pair.after, device="cpu")
    assert res.registration.aligned and res.reconciliation is not None
    rec = res.reconciliation
    assert rec.evidence is True
    b2, a2, common = res.before_labels_pair, res.after_labels_aligned, res.common
    assert b2 is not None and a2 is not None and common is not None
    # BEFORE's pair labels differ from its own only where the photos were made to agree,
    hrec = res.hair_reconciliation
    assert hrec is not None and hrec.evidence is True
    moved = b2 != res.before_labels
    assert moved.sum() <= rec.agreed_lesion_px + rec.agreed_other_px + hrec.agreed_hair_px + hrec.agreed_other_px
    # ... and only in whether a pixel is lesion or hair.
    assert (((b2 == LESION) != (res.before_labels == LESION)) | ((b2 == HAIR) != (res.before_labels == HAIR)))[moved].all()
    # The change metrics and fates are those of the two reconciled maps.
    ch = res.change
    assert ch.lesion_area_before_common_px == int(((b2 == LESION) & common).sum())
    assert ch.persistent_lesion_px == int(((b2 == LESION) & (a2 == LESION) & common).sum())
    assert ch.new_lesion_px == rec.new_kept_px and ch.resolved_lesion_px == rec.resolved_kept_px
    # Per-photo metrics never change.
    min_area = default_min_lesion_area_px(res.before_labels.shape)
    assert res.metrics_before == photo_metrics(res.before_labels, min_lesion_area_px=min_area)
    assert res.metrics_before.easi_min_lesion_area_px == min_area == res.lesions.min_area_px
    # The files hold both maps the change metrics compare.
    written = imgtool.report.write_analysis(res, tmp_path)
    assert {"before_labels_pair.png", "after_labels_aligned.png"} <= set(written)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "before_labels_pair.png")), b2)
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["metrics"]["reconciliation"]["evidence"] is True
    assert doc["metrics"]["reconciliation"]["local_light"] is True and rec.local_light is True
    assert "net of the nearby skin's, for local light" in (tmp_path / "report.html").read_text()
    # Both photos' tiles in one forward pass: faster, and the same labels (up to a
    # float near-tie in the arg-max, which a different batch's kernels may flip).
    batched = imgtool.analyze_pair(pair.before, pair.after, device="cpu", batch_size=2)
    assert np.mean(batched.before_labels != res.before_labels) < 1e-3
    assert np.mean(batched.after_labels != res.after_labels) < 1e-3


def test_findings_say_how_much_month0_lesion_the_pair_set_aside(analysis: imgtool.PairAnalysis) -> None:
    import dataclasses

    from imgtool.figure import headline

    assert not any("not counted" in line for line in headline(analysis))  # classical: BEFORE unchanged
    b, common = analysis.before_labels, analysis.common
    assert common is not None
    set_aside = (b == LESION) & common
    set_aside[: b.shape[0] // 2] = False
    pair_b = np.where(set_aside, SKIN, b).astype(np.uint8)
    lines = headline(dataclasses.replace(analysis, before_labels_pair=pair_b))
    assert sum(f"{int(set_aside.sum()):,} px called lesion at month 0 only" in line for line in lines) == 1


def test_findings_give_the_area_change_of_persistent_lesions_and_the_easi_share(analysis: imgtool.PairAnalysis) -> None:
    import dataclasses

    from imgtool.figure import headline
    from imgtool.quantify import FATE_PERSISTENT

    les = analysis.lesions
    assert les is not None and les.fates is not None
    mb, ma = analysis.metrics_before, analysis.metrics_after
    easi = [line for line in headline(analysis) if line.startswith("EASI")]
    assert easi == [
        f"EASI area score {mb.easi_area_score} -> {ma.easi_area_score} "
        f"({100 * mb.easi_share_of_body:.1f} % -> {100 * ma.easi_share_of_body:.1f} % of the body surface in view)"
    ]
    # Two persistent lesions, 1000 -> 10 px and 200 -> 0 px (its remnant elsewhere): together -99 %.
    item = les.fates.items[0]
    p1 = dataclasses.replace(item, fate=FATE_PERSISTENT, area_before_px=1000, area_after_px=10.0)
    p2 = dataclasses.replace(item, fate=FATE_PERSISTENT, area_before_px=200, area_after_px=0.0)
    fates = dataclasses.replace(les.fates, items=(p1, p2))
    lines = headline(dataclasses.replace(analysis, lesions=dataclasses.replace(les, fates=fates)))
    assert sum("2 persistent (area -99 %), 0 new" in line for line in lines) == 1


def test_findings_give_no_percentage_of_a_month0_area_below_one_lesion(analysis: imgtool.PairAnalysis) -> None:
    import dataclasses

    from imgtool.figure import headline

    les = analysis.lesions
    assert les is not None and les.min_area_px > 6
    # 6 px -> 72 px of "lesion" is +1100 %: noise on a base smaller than one countable lesion.
    tiny = dataclasses.replace(analysis.change, lesion_area_before_common_px=6, lesion_area_after_common_px=72, lesion_area_change_rel=11.0)
    lines = headline(dataclasses.replace(analysis, change=tiny))
    assert lines[0] == (
        "Lesion area 6 px -> 72 px in the region both photos show "
        f"(month 0 has less than one lesion of the minimum size, {les.min_area_px:,} px: no percentage)"
    )
    assert not any("1100" in line for line in lines)
    # At the minimum size the percentage is given.
    at_min = dataclasses.replace(tiny, lesion_area_before_common_px=les.min_area_px, lesion_area_change_rel=-0.5)
    assert headline(dataclasses.replace(analysis, change=at_min))[0] == "Lesion area fell 50 % (in the region both photos show)"


def test_homography_convention(analysis: imgtool.PairAnalysis, scene_pair: dict) -> None:
    h = analysis.registration.homography
    assert corner_error(h, scene_pair["H"], (300, 400)) < 1.0
    # A point of AFTER maps onto the BEFORE pixel with the same content.
    pt = np.array([[180.0, 140.0]])
    np.testing.assert_allclose(map_points(h, pt), map_points(scene_pair["H"], pt), atol=1.0)


def test_change_pixels_on_aligned_labels(analysis: imgtool.PairAnalysis) -> None:
    b = analysis.before_labels
    a = analysis.after_labels_aligned
    common = analysis.common
    assert a is not None and common is not None and a.shape == b.shape
    ch = analysis.change
    assert ch.persistent_lesion_px == int(((b == LESION) & (a == LESION) & common).sum())
    assert ch.new_lesion_px == int(((b != LESION) & (a == LESION) & common).sum())
    assert ch.resolved_lesion_px == int(((b == LESION) & (a != LESION) & common).sum())
    assert ch.regrown_hair_px == int(((b != HAIR) & (a == HAIR) & common).sum())
    assert ch.lost_hair_px == int(((b == HAIR) & (a != HAIR) & common).sum())
    # Same scene, AFTER only re-photographed: the lesions must mostly persist.
    assert ch.persistent_lesion_px > 0.7 * ch.lesion_area_before_common_px


def test_written_outputs_match_json(analysis: imgtool.PairAnalysis, tmp_path: Path) -> None:
    files = imgtool.write_analysis(analysis, tmp_path)
    doc = json.loads(files["result.json"].read_text())
    before = np.asarray(Image.open(tmp_path / "before_labels.png"))
    after = np.asarray(Image.open(tmp_path / "after_labels.png"))
    m_b = photo_metrics(before).to_dict()
    m_a = photo_metrics(after).to_dict()
    for key in PHOTO_FIELDS:
        assert doc["metrics"]["before"][key] == m_b[key]
        assert doc["metrics"]["after"][key] == m_a[key]
    aligned = np.asarray(Image.open(tmp_path / "after_aligned.png"))
    assert aligned.shape == (300, 400, 3)
    assert int((before == SKIN).sum()) > 0


def test_roi_restricts_every_area(scene_pair: dict) -> None:
    roi = np.zeros((300, 400), bool)
    roi[100:200, 150:300] = True
    res = imgtool.analyze_pair(scene_pair["before"], scene_pair["after"], roi=roi, options=AnalysisOptions(method="classical"))
    assert res.metrics_before.roi_area_px == 100 * 150
    assert res.metrics_before.skin_area_px <= 100 * 150
    assert res.change.common_area_px <= 100 * 150
    # AFTER's ROI is BEFORE's mapped through the registration: nearly the same size.
    assert abs(res.metrics_after.roi_area_px - 100 * 150) < 0.1 * 100 * 150


def test_failed_registration_keeps_photo_metrics(scene_pair: dict, rng: np.random.Generator) -> None:
    # An unrelated AFTER photo: noise. Registration must fail, change metrics that need it must be null.
    noise = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    res = imgtool.analyze_pair(scene_pair["before"], noise, options=AnalysisOptions(method="classical"))
    assert res.registration.status == "failed"
    assert res.registration.homography is None
    d = res.to_dict()
    for key in ("lesion_area_change_rel", "new_lesion_px", "resolved_lesion_px", "persistent_lesion_px", "regrown_hair_px", "lost_hair_px"):
        assert d["metrics"]["change"][key] is None
    assert d["metrics"]["before"]["skin_area_px"] > 0
    assert any("registration failed" in w for w in res.warnings)


def test_after_pixel_size_follows_registration_scale(scene_pair: dict) -> None:
    res = imgtool.analyze_pair(
        scene_pair["before"], scene_pair["after"], options=AnalysisOptions(method="classical", pixel_size_mm=0.5)
    )
    # The true transform is close to unit scale (det of the linear part ~ 0.94).
    assert res.metrics_after.pixel_size_mm == pytest.approx(0.5 * np.sqrt(0.96 * 0.98 + 0.06 * 0.05), rel=0.05)
    fixed = imgtool.analyze_pair(
        scene_pair["before"],
        scene_pair["after"],
        options=AnalysisOptions(method="classical", pixel_size_mm=0.5, after_pixel_size_mm=0.3),
    )
    assert fixed.metrics_after.pixel_size_mm == 0.3


def test_same_input_same_output(scene_pair: dict) -> None:
    opts = AnalysisOptions(method="classical")
    a = imgtool.analyze_pair(scene_pair["before"], scene_pair["after"], options=opts).to_dict()
    b = imgtool.analyze_pair(scene_pair["before"], scene_pair["after"], options=opts).to_dict()
    for d in (a, b):
        d["registration"]["quality"].pop("time_s", None)
    assert a == b


def test_bad_options() -> None:
    with pytest.raises(imgtool.UsageError):
        AnalysisOptions(pixel_size_mm=-1.0)
    with pytest.raises(imgtool.UsageError):
        AnalysisOptions(method="nonsense")
