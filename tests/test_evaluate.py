"""Evaluation: scores on hand-computed masks, folder conventions, phantom and real-set runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgtool.datasets import CONVENTIONS, detect_convention, find_pairs, read_binary_mask, read_id_list, select_ids
from imgtool.errors import InputError, UsageError
from imgtool.evaluate import (
    CHANGE_FIELDS,
    evaluate_masks,
    evaluate_phantoms,
    overlap_scores,
    phantom_source,
    registration_errors,
    scores_from_counts,
    write_evaluation,
)
from imgtool.io import write_png
from imgtool.labels import LESION
from imgtool.pipeline import AnalysisOptions
from imgtool.segmentation import segment_labels
from imgtool.synth import SynthOptions, render_pair, render_photo


def test_overlap_scores_on_hand_computed_masks():
    pred = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    truth = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0]], dtype=bool)
    s = overlap_scores(pred, truth)
    # tp = 2, fp = 2, fn = 4
    assert s["dice"] == pytest.approx(4 / 10)
    assert s["iou"] == pytest.approx(2 / 8)
    assert s["sensitivity"] == pytest.approx(2 / 6)
    assert s["precision"] == pytest.approx(2 / 4)
    assert (s["true_area_px"], s["pred_area_px"], s["area_error_px"]) == (6, 4, -2)
    assert s["area_error_rel"] == pytest.approx(-2 / 6)
    same = overlap_scores(truth, truth)
    assert same["dice"] == same["iou"] == same["sensitivity"] == same["precision"] == 1.0
    empty = overlap_scores(np.zeros((3, 4), bool), np.zeros((3, 4), bool))
    assert empty["dice"] is None and empty["iou"] is None and empty["area_error_rel"] is None
    miss = scores_from_counts(0, 5, 0)
    assert miss["dice"] == 0.0 and miss["sensitivity"] is None and miss["precision"] == 0.0
    with pytest.raises(ValueError):
        overlap_scores(pred, truth[:2])


def test_registration_error_of_a_known_offset():
    pair = render_pair(3, size=(160, 128), options=SynthOptions(nonrigid=0.0, lesions=(2, 3)))
    exact = registration_errors(pair.homography, pair)
    assert exact["corner_error_px"] == pytest.approx(0.0, abs=1e-9)
    shifted = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -4.0], [0.0, 0.0, 1.0]]) @ pair.homography
    err = registration_errors(shifted, pair)
    assert err["corner_error_px"] == pytest.approx(5.0)
    if err["centroid_count"]:
        assert err["centroid_error_px"] == pytest.approx(5.0)
    failed = registration_errors(None, pair)
    assert failed["corner_error_px"] is None and failed["centroid_error_px"] is None


def test_evaluate_phantoms_rows_and_summary():
    ev = evaluate_phantoms(phantom_source(2, 21, size=(256, 192)), options=AnalysisOptions(method="classical"), source="test")
    assert ev.kind == "phantoms" and len(ev.rows) == 4 and len(ev.pair_rows) == 2
    assert ev.settings["model"] is None
    for row in ev.pair_rows:
        for f in CHANGE_FIELDS:
            t, e, a = row[f"true_{f}"], row[f"est_{f}"], row[f"abs_err_{f}"]
            assert a is None if (t is None or e is None) else a == pytest.approx(abs(e - t))
    # The truth columns are the pair's truth.json metrics.
    pid, pair = next(iter(phantom_source(1, 21, size=(256, 192))))
    assert ev.pair_rows[0]["id"] == pid
    assert ev.pair_rows[0]["true_common_area_px"] == pair.truth["metrics"]["change"]["common_area_px"]
    assert ev.pair_rows[0]["true_hair_coverage_change_common"] == pair.truth["metrics"]["change"]["hair_coverage_change_common"]
    seg = ev.summary["segmentation"]
    tp = sum(r["tp_skin"] for r in ev.rows)
    fp = sum(r["fp_skin"] for r in ev.rows)
    fn = sum(r["fn_skin"] for r in ev.rows)
    assert seg["skin"]["dice_pooled"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert ev.summary["registration"]["pairs"] == 2


def _write_set(folder, kind: str, n: int = 3):
    """A small folder of phantom photos with masks in one of the public conventions."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, lab = render_photo(40 + i, size=(160, 160), options=SynthOptions(close_up=1.0, lesions=(1, 3), views=("limb", "back")))
        mask = ((lab == LESION) * 255).astype(np.uint8)
        if kind == "suffix":
            write_png(folder / f"P{i}.png", img)
            write_png(folder / f"P{i}_mask.png", mask)
        elif kind == "celeba":
            write_png(folder / f"{i}.jpg", img)  # PNG bytes under a .jpg name: readers look at content
            write_png(folder / f"{i}_hair.png", mask[::2, ::2])
        elif kind == "figaro":
            from PIL import Image

            write_png(folder / f"Frame{i}-org.jpg", img)
            Image.fromarray(mask > 0).convert("1").save(folder / f"Frame{i}-gt.pbm")
    return folder


@pytest.mark.parametrize("kind", ["suffix", "celeba", "figaro"])
def test_conventions_are_detected_and_masks_read(tmp_path, kind):
    folder = _write_set(tmp_path / kind, kind)
    conv = detect_convention(folder)
    assert conv.name == kind
    pairs = find_pairs(folder, conv)
    assert len(pairs) == 3
    _, img_path, mask_path = pairs[0]
    mask = read_binary_mask(mask_path, conv.threshold, (160, 160), conv.mask_scale)
    assert mask.shape == (160, 160) and mask.any()


def test_evaluate_masks_matches_direct_scoring(tmp_path):
    folder = _write_set(tmp_path / "set", "suffix")
    ev = evaluate_masks(folder, method="classical")
    assert ev.settings["class"] == "lesion" and len(ev.rows) == 3
    assert ev.settings["model"] is None  # no weights behind the classical method
    from imgtool.io import read_image

    for row in ev.rows:
        img, _ = read_image(folder / row["image"])
        truth = read_binary_mask(folder / f"{row['id']}_mask.png", 128)
        pred = segment_labels([img], method="classical")[0] == LESION
        expect = overlap_scores(pred, truth)
        for k in ("dice", "iou", "sensitivity", "precision", "area_error_px"):
            assert row[k] == expect[k]
    sub = evaluate_masks(folder, method="classical", ids=["P1"])
    assert [r["id"] for r in sub.rows] == ["P1"]
    with pytest.raises(UsageError):
        evaluate_masks(folder, method="classical", ids=["nope"])
    with pytest.raises(UsageError):
        evaluate_masks(folder, mask_class="nails", method="classical")


def test_half_size_masks_are_scaled(tmp_path):
    folder = _write_set(tmp_path / "celeb", "celeba", n=1)
    ev = evaluate_masks(folder, method="classical", mask_class="lesion")
    assert ev.rows[0]["true_area_px"] > 0
    conv = [c for c in CONVENTIONS if c.name == "celeba"][0]
    with pytest.raises(InputError):
        read_binary_mask(folder / "0_hair.png", 128, (100, 160), conv.mask_scale)


def test_split_files_and_id_lists(tmp_path):
    (tmp_path / "ids.txt").write_text("# held out\nA\nB  # second\n\n")
    assert read_id_list(split=tmp_path / "ids.txt") == ["A", "B"]
    (tmp_path / "s.json").write_text(json.dumps({"sets": {"pad": {"test": ["B", "C"], "train": ["A"]}}}))
    assert read_id_list(split=tmp_path / "s.json", split_key="sets.pad.test") == ["B", "C"]
    assert read_id_list(ids="A,B", split=tmp_path / "s.json", split_key="sets.pad.test") == ["B"]
    (tmp_path / "l.json").write_text(json.dumps(["x.png"]))
    assert read_id_list(split=tmp_path / "l.json") == ["x.png"]
    with pytest.raises(UsageError):
        read_id_list(split=tmp_path / "s.json", split_key="sets.fuseg.test")
    assert read_id_list() is None
    pairs = [("a", tmp_path / "a.png", tmp_path / "a_mask.png"), ("b", tmp_path / "b.png", tmp_path / "b_mask.png")]
    assert select_ids(pairs, ["b.png"]) == pairs[1:]


def test_evaluate_cli_on_phantoms_and_masks(tmp_path, capsys):
    from imgtool.cli import main

    out = tmp_path / "ev"
    assert main(["evaluate", "--phantoms", "1", "--size", "192x160", "--seed", "3", "--device", "cpu", "--batch-size", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "corner_error_px" in printed and "lesion" in printed
    data = json.loads((out / "evaluation.json").read_text())
    assert data["kind"] == "phantoms" and len(data["pairs"]) == 1
    # The default method is the CNN, and the scores say which weights made them.
    from imgtool.segmentation import load_model

    shipped = load_model(None, device="cpu")
    assert data["settings"]["method"] == "cnn"
    assert data["settings"]["model"]["name"] == shipped.name and data["settings"]["model"]["sha256"] == shipped.sha256
    assert data["settings"]["model"]["device"] == "cpu" and data["settings"]["nonrigid"] is False
    # The pipeline's registration options reach the scored pipeline.
    assert main(["evaluate", "--phantoms", "1", "--size", "192x160", "--seed", "3", "--method", "classical", "--nonrigid", "-o", str(tmp_path / "evnr")]) == 0
    assert json.loads((tmp_path / "evnr" / "evaluation.json").read_text())["settings"]["nonrigid"] is True
    assert (out / "per_pair.csv").is_file() and (out / "summary.csv").is_file()

    folder = _write_set(tmp_path / "figaro", "figaro", n=2)
    assert main(["evaluate", str(folder), "--class", "lesion", "-o", str(tmp_path / "ev2")]) == 0
    assert "dice" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev2" / "evaluation.json").read_text())["settings"]["model"]["sha256"] == shipped.sha256
    assert main(["evaluate", str(folder), "--phantoms", "2", "-o", str(tmp_path / "ev3")]) == 2
    assert main(["evaluate", "-o", str(tmp_path / "ev3")]) == 2
    # The synth CLI's output folder is recognised as phantoms.
    assert main(["synth", "-o", str(tmp_path / "ph"), "--n", "1", "--size", "160x160"]) == 0
    assert main(["evaluate", str(tmp_path / "ph"), "-o", str(tmp_path / "ev4")]) == 0
    assert json.loads((tmp_path / "ev4" / "evaluation.json").read_text())["kind"] == "phantoms"


def test_write_evaluation_files(tmp_path):
    folder = _write_set(tmp_path / "set", "suffix", n=2)
    ev = evaluate_masks(folder, method="classical")
    files = write_evaluation(ev, tmp_path / "out")
    assert set(files) == {"json", "summary", "photos"}
    lines = files["photos"].read_text().splitlines()
    assert lines[0].startswith("id,image,width,height,dice") and len(lines) == 3


def test_real_sets_are_scored(shared_data):
    for name in ("pad_ufes20_handmasks", "figaro1k_hair"):
        folder = shared_data / name
        if not folder.is_dir():
            pytest.skip(f"{name} not present")
        conv = detect_convention(folder)
        ids = [p[0] for p in find_pairs(folder, conv)[:2]]
        ev = evaluate_masks(folder, method="classical", ids=ids)
        assert len(ev.rows) == 2
        assert all(r["true_area_px"] > 0 for r in ev.rows)
