"""The command line: bad input through the real CLI, exit codes, and clean outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtool.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m imgtool ARGS`` in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "imgtool", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def assert_clean_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("imgtool")
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    photo = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    files = {}
    files["empty"] = tmp_path / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.jpg"
    files["text"].write_text("patient notes, not a photo\n")
    Image.fromarray(photo).save(tmp_path / "whole.jpg", quality=90)
    raw = (tmp_path / "whole.jpg").read_bytes()
    files["truncated"] = tmp_path / "truncated.jpg"
    files["truncated"].write_bytes(raw[: len(raw) // 3])
    files["small"] = tmp_path / "small.png"
    Image.fromarray(photo[:50, :60]).save(files["small"])
    files["file_not_dir"] = tmp_path / "occupied"
    files["file_not_dir"].write_text("a file where the output folder should go")
    return files


@pytest.mark.parametrize(
    "case, code, needle",
    [
        ("missing", 1, "file not found"),
        ("empty", 1, "file is empty"),
        ("text", 1, "not a recognised image"),
        ("truncated", 1, "truncated"),
        ("small", 1, "below the minimum"),
        ("too_many_pixels", 1, "over the limit"),
        ("out_is_file", 1, "not a folder"),
        ("out_under_file", 1, "cannot create output folder"),
        ("unknown_option", 2, "unrecognized arguments: --frobnicate"),
        ("missing_out", 2, "-o/--out"),
        ("bad_pixel_size", 2, "--pixel-size-mm"),
        ("bad_method", 2, "--method"),
        ("roi_wrong_size", 1, "ROI"),
    ],
)
def test_bad_input_matrix(case: str, code: int, needle: str, scene_pair: dict, bad_files: dict, tmp_path: Path) -> None:
    before, after = str(scene_pair["before"]), str(scene_pair["after"])
    out = tmp_path / "out"
    args = ["analyze", before, after, "-o", str(out)]
    name_needle = None
    if case == "missing":
        args[1] = str(tmp_path / "no_such_photo.jpg")
        name_needle = "no_such_photo.jpg"
    elif case in ("empty", "text", "truncated", "small"):
        args[2] = str(bad_files[case])
        name_needle = bad_files[case].name
    elif case == "too_many_pixels":
        args += ["--max-pixels", "1000"]
    elif case == "out_is_file":
        args[4] = str(bad_files["file_not_dir"])
        out = bad_files["file_not_dir"]
    elif case == "out_under_file":
        args[4] = str(bad_files["file_not_dir"] / "sub")
    elif case == "unknown_option":
        args += ["--frobnicate"]
    elif case == "missing_out":
        args = ["analyze", before, after]
    elif case == "bad_pixel_size":
        args += ["--pixel-size-mm", "-0.1"]
    elif case == "bad_method":
        args += ["--method", "magic"]
    elif case == "roi_wrong_size":
        roi = tmp_path / "roi.png"
        Image.fromarray(np.full((100, 100), 255, np.uint8)).save(roi)
        args += ["--roi", str(roi)]
    proc = run_cli(*args)
    assert_clean_error(proc, code, needle, *([name_needle] if name_needle else []))
    # Never a result or a partial file in OUT.
    if out.is_dir():
        assert list(out.iterdir()) == [], list(out.iterdir())


def test_analyze_writes_contract(scene_pair: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("analyze", str(scene_pair["before"]), str(scene_pair["after"]), "-o", str(out), "--method", "classical")
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    for f in ("result.json", "before_labels.png", "after_labels.png", "after_aligned.png", "after_labels_aligned.png", "metrics.csv"):
        assert f in names
    assert not any(n.startswith(".") for n in names), names  # no temporary files left
    doc = json.loads((out / "result.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["registration"]["status"] == "ok"


@pytest.mark.parametrize(("flags", "want"), [((), True), (("--no-local-light",), False)])
def test_analyze_local_light_switch(scene_pair: dict, tmp_path: Path, flags: tuple[str, ...], want: bool) -> None:
    out = tmp_path / "out"
    code = main(["analyze", str(scene_pair["before"]), str(scene_pair["after"]), "-o", str(out), "--method", "classical", *flags])
    assert code == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["settings"]["local_light"] is want
    assert doc["metrics"]["reconciliation"]["local_light"] is want


def test_register_prints_json(scene_pair: dict) -> None:
    proc = run_cli("register", str(scene_pair["before"]), str(scene_pair["after"]))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    h = np.array(doc["homography"])
    assert h.shape == (3, 3)
    # The printed homography maps AFTER points onto BEFORE points (within a pixel).
    from imgtool.registration import corner_error

    assert corner_error(h, scene_pair["H"], (300, 400)) < 1.0


def test_segment_cli(scene_pair: dict, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    assert main(["segment", str(scene_pair["before"]), str(scene_pair["after"]), "-o", str(out), "--method", "classical"]) == 0
    for stem in ("before", "after"):
        lab = np.asarray(Image.open(out / f"{stem}_labels.png"))
        assert lab.ndim == 2 and lab.dtype == np.uint8 and lab.max() <= 3
        doc = json.loads((out / f"{stem}.json").read_text())
        assert doc["metrics"]["lesion_area_px"] == int((lab == 2).sum())
        assert doc["metrics"]["skin_area_px"] == int(((lab == 1) | (lab == 2)).sum())


def test_segment_refuses_stem_collision(scene_pair: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "x"
    other.mkdir()
    (other / "before.png").write_bytes(Path(scene_pair["before"]).read_bytes())
    code = main(["segment", str(scene_pair["before"]), str(other / "before.png"), "-o", str(tmp_path / "o")])
    assert code == 2
    assert "both write before_labels.png" in capsys.readouterr().err


def test_python_m_and_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("imgtool ")
    proc = run_cli()
    assert_clean_error(proc, 2, "COMMAND")


def test_flags_reach_the_analysis_options() -> None:
    # analyze, batch and evaluate build their AnalysisOptions from the same flags.
    from imgtool.cli import _analysis_options, build_parser
    from imgtool.pipeline import AnalysisOptions

    p = build_parser()
    common = ["--method", "classical", "--no-local-light", "--nonrigid"]
    a = _analysis_options(
        p.parse_args(["analyze", "b.png", "a.png", "-o", "o", *common, "--min-lesion-area", "7", "--view", "back", "--pixel-size-mm", "0.1", "--after-pixel-size-mm", "0.2", "--max-pixels", "1000"])
    )
    assert (a.method, a.local_light, a.registration.nonrigid, a.min_lesion_area_px, a.view) == ("classical", False, True, 7, "back")
    assert (a.pixel_size_mm, a.after_pixel_size_mm, a.max_pixels, a.reconcile) == (0.1, 0.2, 1000, True)
    b = _analysis_options(p.parse_args(["batch", "m.csv", "-o", "o", *common, "--min-lesion-area", "7", "--pixel-size-mm", "0.1", "--no-reconcile"]))
    assert (b.method, b.local_light, b.registration.nonrigid, b.min_lesion_area_px, b.pixel_size_mm, b.reconcile) == ("classical", False, True, 7, 0.1, False)
    assert b.view is None and b.after_pixel_size_mm is None and b.max_pixels == AnalysisOptions().max_pixels
    e = _analysis_options(p.parse_args(["evaluate", "--phantoms", "2", "-o", "o", *common, "--augment"]))
    assert (e.method, e.local_light, e.registration.nonrigid, e.augment) == ("classical", False, True, True)
    assert e.min_lesion_area_px is None and e.pixel_size_mm is None
