"""Phantom generator: determinism, exact labels, truth consistency, truth metrics."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
import sys

import cv2
import numpy as np
import pytest

from imgtool.errors import UsageError
from imgtool.labels import BACKGROUND, HAIR, LESION, SKIN
from imgtool.quantify import change_metrics, default_min_lesion_area_px, photo_metrics
from imgtool.registration import coverage_mask, warp_to_before
from imgtool.synth import (
    DiseaseChange,
    SynthOptions,
    align_to_before,
    before_to_after_maps,
    load_texture_bank,
    map_after_to_before,
    render_pair,
    render_photo,
)
from imgtool.synth.store import pair_id, read_pair, synthesize, write_pair

SIZE = (192, 160)  # (W, H): small, not square


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_photo_is_pairs_before():
    img1, lab1 = render_photo(11, size=SIZE)
    img2, lab2 = render_photo(11, size=SIZE)
    assert img1.shape == (160, 192, 3) and img1.dtype == np.uint8
    assert lab1.shape == (160, 192) and lab1.dtype == np.uint8
    assert _digest(img1, lab1) == _digest(img2, lab2)
    pair = render_pair(11, size=SIZE)
    assert np.array_equal(pair.before, img1)
    assert np.array_equal(pair.before_labels, lab1)
    other, _ = render_photo(12, size=SIZE)
    assert not np.array_equal(other, img1)


def test_pair_is_deterministic():
    a = render_pair(5, size=SIZE)
    b = render_pair(5, size=SIZE)
    assert _digest(a.before, a.after, a.before_labels, a.after_labels) == _digest(b.before, b.after, b.before_labels, b.after_labels)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)


def test_same_bytes_in_a_fresh_process_with_one_thread():
    """No thread-count or process-state dependence (OpenCV and BLAS limited to one thread)."""
    code = (
        "import cv2, hashlib, numpy as np; cv2.setNumThreads(1);"
        "from imgtool.synth import render_pair;"
        f"p = render_pair(7, size={SIZE});"
        "h = hashlib.sha256();"
        "[h.update(np.ascontiguousarray(a).tobytes()) for a in (p.before, p.after, p.before_labels, p.after_labels)];"
        "print(h.hexdigest())"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
    p = render_pair(7, size=SIZE)
    assert out == _digest(p.before, p.after, p.before_labels, p.after_labels)


def _digest_in_subprocess(seed: int, size: tuple[int, int], env: dict[str, str]) -> tuple[str, str]:
    code = (
        "import cv2, hashlib, numpy as np;"
        "from imgtool.synth import render_pair;"
        f"p = render_pair({seed}, size={size}, change='random');"
        "h = hashlib.sha256();"
        "[h.update(np.ascontiguousarray(a).tobytes()) for a in (p.before, p.after, p.before_labels, p.after_labels)];"
        "print(h.hexdigest(), cv2.getCPUFeaturesLine())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, check=True).stdout.split(maxsplit=1)
    return out[0], out[1]


def test_same_bytes_on_a_cpu_without_avx2():
    """A CPU with other SIMD units draws the same phantom.

    OpenCV and numpy pick SIMD kernels at run time; with AVX2/FMA/AVX switched off
    (as on an older x86-64 CPU) OpenCV's kernels round differently, which changed the
    bytes before the generator pinned OpenCV to its baseline code.
    """
    size = (320, 256)
    env = {"OPENCV_CPU_DISABLE": "AVX2,FMA3,AVX,FP16"}
    try:  # numpy's dispatch targets that this CPU runs (names differ between numpy versions)
        umath = np._core._multiarray_umath
        on = [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)]
    except AttributeError:
        on = []
    if on:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(on)
    digest, features = _digest_in_subprocess(3, size, env)
    if "AVX2" not in features:
        pytest.skip("this CPU has no AVX2 to switch off")
    assert "AVX2?" in features  # the switch took effect: AVX2 is present but disabled
    p = render_pair(3, size=size, change="random")
    assert digest == _digest(p.before, p.after, p.before_labels, p.after_labels)
    assert cv2.useOptimized()  # drawing restores OpenCV's own setting


# --------------------------------------------------------------------------- labels


def test_labels_follow_the_contract_and_options():
    lab_sets = [render_photo(s, size=SIZE)[1] for s in range(6)]
    for lab in lab_sets:
        assert set(np.unique(lab)) <= {BACKGROUND, SKIN, LESION, HAIR}
    no_lesions = SynthOptions(lesions=(0, 0))
    for s in range(4):
        _, lab = render_photo(s, size=SIZE, options=no_lesions)
        assert not np.any(lab == LESION)
    full_hair = SynthOptions(views=("scalp",), hair_loss=(0.0, 0.0), close_up=1.0, lesions=(0, 0))
    bald = SynthOptions(views=("scalp",), hair_loss=(1.0, 1.0), close_up=1.0, lesions=(0, 0))
    for s in range(3):
        _, lab_h = render_photo(s, size=SIZE, options=full_hair)
        _, lab_b = render_photo(s, size=SIZE, options=bald)
        roi = lab_h != BACKGROUND
        assert np.mean(lab_h[roi] == HAIR) > 0.5
        # Total loss: only strands from elsewhere could cover skin, and there are none.
        assert np.mean(lab_b[lab_b != BACKGROUND] == HAIR) < 0.02


def test_skin_type_darkens_skin():
    def skin_lum(f: int) -> float:
        vals = []
        for s in range(3):
            img, lab = render_photo(s, size=SIZE, options=SynthOptions(fitzpatrick=(f,), lesions=(0, 0), close_up=1.0, distractors=0.0))
            vals.append(img[lab == SKIN].mean())
        return float(np.mean(vals))

    assert skin_lum(1) > skin_lum(4) + 30 > skin_lum(6) + 50


def test_bad_options_and_sizes_are_usage_errors():
    with pytest.raises(UsageError):
        SynthOptions(views=("elbow",))
    with pytest.raises(UsageError):
        SynthOptions(fitzpatrick=(0,))
    with pytest.raises(UsageError):
        SynthOptions(hair_loss=(0.8, 0.2))
    with pytest.raises(UsageError):
        render_photo(1, size=(32, 32))
    with pytest.raises(UsageError):
        render_pair(1, size=SIZE, change="sometimes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- truth


def _agreement(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    # Boundary pixels can flip with nearest-neighbour warping; score the interiors.
    inner = region.copy()
    for lab in np.unique(a):
        edge = cv2.morphologyEx((a == lab).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
        inner &= ~edge
    return float(np.mean(a[inner] == b[inner]))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_unchanged_disease_warps_onto_before_labels(seed):
    """With no disease change the true motion maps AFTER's labels onto BEFORE's."""
    for nonrigid in (0.0, 1.0):
        pair = render_pair(seed, size=SIZE, options=SynthOptions(nonrigid=nonrigid), change="none")
        assert (pair.displacement is not None) == (nonrigid == 1.0)
        aligned, common = align_to_before(pair.after_labels, pair.homography, pair.displacement, pair.before_labels.shape)
        assert common.mean() > 0.4
        assert _agreement(pair.before_labels, aligned, common) > 0.995


@pytest.mark.parametrize("seed", [4, 5])
def test_changed_disease_keeps_the_body_in_place(seed):
    """Wherever the disease did not change, labels agree: the body outline always, and
    existing lesions and hair when the only change is new lesions."""
    pair = render_pair(seed, size=SIZE, options=SynthOptions(nonrigid=0.0))
    aligned, common = align_to_before(pair.after_labels, pair.homography, None, pair.before_labels.shape)
    body_b = pair.before_labels != BACKGROUND
    body_a = aligned != BACKGROUND
    assert _agreement(body_b.astype(np.uint8), body_a.astype(np.uint8), common) > 0.995

    opts = SynthOptions(nonrigid=0.0, lesions=(2, 4), views=("limb", "back", "scalp"))
    pair = render_pair(seed, size=SIZE, options=opts, change=DiseaseChange(new_lesions=2))
    aligned, common = align_to_before(pair.after_labels, pair.homography, None, pair.before_labels.shape)
    for cls in (LESION, HAIR):
        was = (pair.before_labels == cls) & common
        inner = cv2.erode(was.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if inner.sum() > 20:
            # A new lesion may appear on old skin, never remove old lesion or hair.
            assert np.mean(aligned[inner] == cls) > 0.99
    gained = (aligned == LESION) & (pair.before_labels != LESION) & common
    assert gained.sum() > 0


def test_homography_direction_and_photometry_with_a_still_patient():
    """AFTER warped by the true homography looks like BEFORE (no lighting change, clean sensor)."""
    opts = SynthOptions(artefacts=0.0, lighting_change=0.0, nonrigid=0.0, views=("back",), close_up=0.0)
    pair = render_pair(3, size=(256, 256), options=opts, change="none")
    warped = warp_to_before(pair.after, pair.homography, pair.before.shape[:2])
    common = coverage_mask(pair.homography, pair.after.shape[:2], pair.before.shape[:2])
    body = cv2.erode(((pair.before_labels != BACKGROUND) & common).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    gb = cv2.cvtColor(pair.before, cv2.COLOR_RGB2GRAY)[body].astype(float)
    ga = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY)[body].astype(float)
    assert np.corrcoef(gb, ga)[0, 1] > 0.9
    wrong = warp_to_before(pair.after, np.linalg.inv(pair.homography), pair.before.shape[:2])
    gw = cv2.cvtColor(wrong, cv2.COLOR_RGB2GRAY)[body].astype(float)
    assert np.corrcoef(gb, gw)[0, 1] < np.corrcoef(gb, ga)[0, 1] - 0.05


def test_displacement_maps_are_inverse_of_each_other():
    pair = render_pair(2, size=SIZE, options=SynthOptions(nonrigid=1.0))
    assert pair.displacement is not None and pair.displacement.shape == (160, 192, 2)
    assert 0.05 < np.abs(pair.displacement).max() < 0.05 * max(SIZE)
    mx, my = before_to_after_maps(pair.homography, pair.displacement, pair.before_labels.shape)
    ys, xs = np.mgrid[20:140:15, 20:170:15]
    pts_a = np.stack([mx[ys, xs].ravel(), my[ys, xs].ravel()], axis=1)
    back = map_after_to_before(pts_a, pair.homography, pair.displacement)
    assert np.abs(back - np.stack([xs.ravel(), ys.ravel()], axis=1)).max() < 0.05


def test_truth_metrics_recomputed_from_written_label_maps(tmp_path):
    pair = render_pair(8, size=SIZE, options=SynthOptions(nonrigid=0.0))
    folder = write_pair(pair, tmp_path / "p")
    back = read_pair(folder)
    truth = json.loads((folder / "truth.json").read_text())
    assert np.array_equal(back.before_labels, pair.before_labels) and np.array_equal(back.after, pair.after)
    h = np.asarray(truth["homography"])
    lb, la = back.before_labels, back.after_labels
    m_b = photo_metrics(lb, min_lesion_area_px=default_min_lesion_area_px(lb.shape))
    m_a = photo_metrics(la, min_lesion_area_px=default_min_lesion_area_px(la.shape))
    aligned = warp_to_before(la, h, lb.shape, nearest=True)
    common = coverage_mask(h, la.shape, lb.shape)
    ch = change_metrics(m_b, m_a, lb, aligned, common=common)
    assert truth["metrics"] == json.loads(json.dumps({"before": m_b.to_dict(), "after": m_a.to_dict(), "change": ch.to_dict()}))
    assert truth["displacement"] is None


def test_nonrigid_pair_writes_its_displacement(tmp_path):
    pair = render_pair(2, size=SIZE, options=SynthOptions(nonrigid=1.0))
    folder = write_pair(pair, tmp_path / "p")
    back = read_pair(folder)
    assert (folder / "displacement.npy").is_file()
    assert np.array_equal(back.displacement, pair.displacement)


def test_disease_change_moves_the_numbers_the_right_way():
    worse = DiseaseChange(new_lesions=3, shrink=-0.3, hair_loss_after=1.0)
    better = DiseaseChange(resolve=1.0, hair_loss_after=0.0)
    opts = SynthOptions(views=("scalp",), lesions=(2, 3), hair_loss=(0.4, 0.6), close_up=1.0, nonrigid=0.0)
    # A seed whose month-0 lesions are not under long hair (hair lying over skin is labelled hair).
    mw = render_pair(7, size=SIZE, options=opts, change=worse).truth["metrics"]
    mb = render_pair(7, size=SIZE, options=opts, change=better).truth["metrics"]
    assert mw["change"]["lesion_area_change_rel"] > 0.05
    assert mw["change"]["new_lesion_px"] > mw["change"]["resolved_lesion_px"]
    assert mw["after"]["hair_coverage"] < 0.05 < mw["before"]["hair_coverage"]
    assert mb["after"]["lesion_area_px"] == 0
    assert mb["change"]["resolved_lesion_px"] == mb["change"]["lesion_area_before_common_px"] > 0
    assert mb["change"]["hair_coverage_change"] > 0.05 and mb["change"]["lost_hair_px"] < mb["change"]["regrown_hair_px"]
    none = render_pair(7, size=SIZE, options=opts, change="none").truth
    assert none["change"] == "none"
    ch = none["metrics"]["change"]
    # Unchanged disease: only boundary pixels can differ after nearest-neighbour alignment.
    assert abs(ch["lesion_area_after_common_px"] - ch["lesion_area_before_common_px"]) <= max(20, 0.05 * ch["lesion_area_before_common_px"])


# --------------------------------------------------------------------------- store, CLI, textures


def test_synthesize_is_independent_of_jobs(tmp_path):
    one = synthesize(tmp_path / "a", 2, 9, size=(128, 128), jobs=1)
    two = synthesize(tmp_path / "b", 2, 9, size=(128, 128), jobs=2)
    assert [p.name for p in one] == [pair_id(9, 0), pair_id(9, 1)] == [p.name for p in two]
    for pa, pb in zip(one, two):
        for name in ("before.png", "after.png", "before_labels.png", "after_labels.png", "truth.json"):
            assert (pa / name).read_bytes() == (pb / name).read_bytes()


def test_synth_cli_writes_pairs(tmp_path):
    from imgtool.cli import main

    assert main(["synth", "-o", str(tmp_path / "out"), "--n", "1", "--seed", "4", "--size", "160x128", "--change", "none", "--views", "limb"]) == 0
    folder = tmp_path / "out" / pair_id(4, 0)
    truth = json.loads((folder / "truth.json").read_text())
    assert truth["scene"]["view"] == "limb" and truth["change"] == "none" and truth["size"] == [160, 128]
    assert main(["synth", "-o", str(tmp_path / "x"), "--size", "20x20"]) == 2
    assert main(["synth", "-o", str(tmp_path / "x"), "--views", "elbow"]) == 2


def test_textures_change_pixels_but_never_labels(tmp_path):
    from imgtool.io import write_png

    files = []
    for s in range(3):
        img, lab = render_photo(100 + s, size=(256, 256), options=SynthOptions(close_up=1.0, fitzpatrick=(2,)))
        write_png(tmp_path / f"t{s}.png", img)
        write_png(tmp_path / f"t{s}_mask.png", ((lab == LESION) * 255).astype(np.uint8))
        files.append(tmp_path / f"t{s}.png")
    bank = load_texture_bank(files, patch=64)
    assert len(bank.skin) > 0 and not bank.hair
    plain = SynthOptions(close_up=1.0)
    textured = SynthOptions(close_up=1.0, textures=bank)
    changed = 0
    for s in range(4):
        a_img, a_lab = render_photo(s, size=SIZE, options=plain)
        b_img, b_lab = render_photo(s, size=SIZE, options=textured)
        assert np.array_equal(a_lab, b_lab)
        changed += int(not np.array_equal(a_img, b_img))
    assert changed >= 2
    with pytest.raises(UsageError):
        load_texture_bank([tmp_path])


def test_contact_sheet_cycles_views(tmp_path):
    from imgtool.synth.sheet import contact_sheet, sheet_options

    assert {sheet_options(i).views[0] for i in range(5)} == {"back", "chest", "limb", "scalp", "face"}
    sheet = contact_sheet(pairs=2, tile=64, size=(128, 128), per_row=2)
    assert sheet.ndim == 3 and sheet.shape[1] > 4 * 64


def test_realism_statistics_on_known_images():
    from imgtool.synth.realism import lesion_contrast, region_stats

    flat = np.full((64, 64, 3), (200, 150, 120), dtype=np.uint8)
    mask = np.ones((64, 64), dtype=bool)
    st = region_stats(flat, mask)
    lab = cv2.cvtColor(flat[:1, :1].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[0, 0]
    assert st["L"] == pytest.approx(float(lab[0]), abs=1e-3) and st["a"] == pytest.approx(float(lab[1]), abs=1e-3)
    assert st["fine_detail"] == pytest.approx(0.0, abs=1e-3) and st["gradient"] == pytest.approx(0.0, abs=1e-3)
    rng = np.random.default_rng(0)
    noisy = np.clip(flat + rng.normal(0, 8, flat.shape), 0, 255).astype(np.uint8)
    assert region_stats(noisy, mask)["fine_detail"] > 1.0
    red = flat.copy()
    lesion = np.zeros((64, 64), dtype=bool)
    lesion[20:44, 20:44] = True
    red[lesion] = (210, 110, 100)
    c = lesion_contrast(red, lesion, ~lesion)
    assert c["delta_a"] > 5 and c["delta_L"] < 0
    assert region_stats(flat, np.zeros((64, 64), dtype=bool)) is None


def test_sample_images_truth_matches_their_label_maps():
    """The committed sample truth is what the committed label maps give."""
    from imgtool.synth import true_metrics
    from imgtool.synth.store import _read_labels

    root = Path(__file__).resolve().parents[1] / "sample_images" / "truth"
    if not root.is_dir():
        pytest.skip("no sample_images in this checkout")
    for view in ("back", "scalp"):
        truth = json.loads((root / f"{view}_truth.json").read_text())
        lb = _read_labels(root / f"{view}_month00_labels.png")
        la = _read_labels(root / f"{view}_month10_labels.png")
        assert lb.shape == (1200, 1600)
        got = true_metrics(lb, la, np.asarray(truth["homography"]), None)
        assert json.loads(json.dumps(got)) == truth["metrics"]
