"""imgtool batch: manifests, atomic pair folders, resume, kill-and-resume, shards, Dask."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgtool.batch import BatchOptions, BatchSummary, read_manifest, run_batch
from imgtool.batch.manifest import check_pair_id
from imgtool.batch.store import BATCH_JSON, PARTIAL_DIR, commit_pair
from imgtool.cli import main
from imgtool.errors import OutputError, UsageError
from imgtool.io import write_png
from imgtool.pipeline import AnalysisOptions, analyze_pair
from imgtool.synth import render_pair

SIZE = (256, 192)
N_PAIRS = 4
REPO = Path(__file__).resolve().parents[1]


def timing_column(name: str) -> bool:
    """Columns that hold wall times, which differ between runs."""
    return name == "seconds" or name.endswith("_s")


def read_results(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if not timing_column(k)} for row in csv.DictReader(f)]


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N_PAIRS small phantom pairs as PNG files, and manifest.csv with pass-through columns."""
    d = tmp_path_factory.mktemp("pairs")
    (d / "photos").mkdir()
    rows = []
    for i in range(N_PAIRS):
        pp = render_pair(100 + i, size=SIZE)
        write_png(d / "photos" / f"p{i}_m00.png", pp.before)
        write_png(d / "photos" / f"p{i}_m10.png", pp.after)
        rows.append(
            {
                "pair_id": f"pair-{i:02d}",
                "before": f"photos/p{i}_m00.png",
                "after": f"photos/p{i}_m10.png",
                "iga": str(i % 5),
                "note": f"itch, wk {i}; é",
            }
        )
    write_manifest(d / "manifest.csv", rows)
    return d


def classical(**kw: object) -> BatchOptions:
    return BatchOptions(analysis=AnalysisOptions(method="classical"), workers=0, progress=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def classical_run(pairs: Path, tmp_path_factory: pytest.TempPathFactory) -> BatchSummary:
    """One uninterrupted one-process run of the manifest (classical method), shared by the tests that compare with it."""
    return run_batch(pairs / "manifest.csv", tmp_path_factory.mktemp("classical") / "out", options=classical())


# ----------------------------------------------------------------------------- manifest


@pytest.mark.parametrize("bad", ["", "../escape", "a/b", "a\\b", ".hidden", "x..y", "tab\there", "results.csv", "x" * 200, " padded"])
def test_bad_pair_ids_are_refused_with_the_line(bad: str) -> None:
    with pytest.raises(UsageError, match="line 7"):
        check_pair_id(bad, 7)


def test_good_pair_ids_pass() -> None:
    for ok in ("P001_back_m10", "a.b", "x-1+2", "Patient 3"):
        assert check_pair_id(ok, 2) == ok


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("pair_id,before,after\n", "no rows"),
        ("pair_id,before\np1,a.png\n", "missing required column"),
        ("pair_id,before,after\np1,a.png,b.png\np1,c.png,d.png\n", "line 3: pair_id 'p1' repeats line 2"),
        ("pair_id,before,after\n../escape,a.png,b.png\n", "line 2: pair_id '../escape'"),
        ("pair_id,before,after,pixel_size_mm\np1,a.png,b.png,-1\n", "line 2: pixel_size_mm"),
        ("pair_id,before,after,status\np1,a.png,b.png,x\n", "reserved"),
        ("pair_id,before,after\np1,,b.png\n", "line 2: before is empty"),
    ],
)
def test_manifest_errors_are_usage_errors_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    m = tmp_path / "m.csv"
    m.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    code = main(["batch", str(m), "-o", str(out), "--quiet", "--method", "classical", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_missing_manifest_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_longitudinal_manifest_pairs_every_visit_with_the_first(tmp_path: Path) -> None:
    rows = [
        {"patient_id": "P1", "view": "back", "timepoint": tp, "image": f"{tp}.jpg", "iga": iga}
        for tp, iga in (("m10", "1"), ("m0", "3"), ("m2", "2"))
    ] + [{"patient_id": "P2", "view": "scalp", "timepoint": "m0", "image": "s0.jpg", "iga": "4"}]
    m = write_manifest(tmp_path / "long.csv", rows)
    jobs = read_manifest(m).jobs
    assert [j.pair_id for j in jobs] == ["P1_back_m0_to_m2", "P1_back_m0_to_m10"]  # m2 before m10; P2 has one visit
    assert [(Path(j.before).name, Path(j.after).name) for j in jobs] == [("m0.jpg", "m2.jpg"), ("m0.jpg", "m10.jpg")]
    assert [j.columns["iga"] for j in jobs] == ["2", "1"]  # the later visit's scores
    assert all(j.columns["comparison"] == "baseline" and j.view == "back" for j in jobs)
    assert Path(jobs[0].before).parent == tmp_path.resolve()
    cons = read_manifest(m, consecutive=True).jobs
    assert [j.pair_id for j in cons] == ["P1_back_m0_to_m2", "P1_back_m0_to_m10", "P1_back_m2_to_m10"]
    assert cons[2].columns["comparison"] == "previous"
    rows.append({"patient_id": "P1", "view": "back", "timepoint": "m2", "image": "again.jpg", "iga": "0"})
    with pytest.raises(UsageError, match="timepoint 'm2' twice"):
        read_manifest(write_manifest(tmp_path / "dup.csv", rows))


def test_shards_deal_pairs_round_robin(pairs: Path) -> None:
    m = read_manifest(pairs / "manifest.csv")
    parts = [m.shard(i, 4).jobs for i in range(1, 5)]
    assert sorted(j.pair_id for p in parts for j in p) == sorted(j.pair_id for j in m.jobs)
    assert [j.pair_id for j in parts[1]] == ["pair-01"]
    assert [j.pair_id for j in m.shard(1, 3).jobs] == ["pair-00", "pair-03"]
    with pytest.raises(UsageError):
        m.shard(0, 4)


# ----------------------------------------------------------------------------- folders


def test_commit_pair_is_all_or_nothing(tmp_path: Path) -> None:
    def broken(folder: Path) -> list[str]:
        (folder / "half.png").write_bytes(b"x")
        raise OutputError("disk full")

    with pytest.raises(OutputError):
        commit_pair(tmp_path, "p1", {"status": "done"}, broken)
    assert not (tmp_path / "p1").exists()
    assert list((tmp_path / PARTIAL_DIR).rglob("*.png")) == []
    commit_pair(tmp_path, "p1", {"status": "failed"})
    commit_pair(tmp_path, "p1", {"status": "done"}, lambda f: [(f / "a.txt").write_text("a") and "a.txt"])
    rec = json.loads((tmp_path / "p1" / BATCH_JSON).read_text())
    assert rec == {"status": "done", "files": ["a.txt"]}
    with pytest.raises(UsageError):
        commit_pair(tmp_path, "..", {"status": "done"})


# ----------------------------------------------------------------------------- runs


def test_batch_matches_analyze_pair_and_keeps_pass_through_columns(pairs: Path, classical_run: BatchSummary) -> None:
    out = classical_run.out
    s = classical_run
    assert s.count("done") + s.count("failed") == N_PAIRS and s.count("skipped") == 0
    rows = read_results(out / "results.csv")
    assert [r["pair_id"] for r in rows] == [f"pair-{i:02d}" for i in range(N_PAIRS)]
    assert [r["note"] for r in rows] == [f"itch, wk {i}; é" for i in range(N_PAIRS)]
    assert [r["iga"] for r in rows] == [str(i % 5) for i in range(N_PAIRS)]
    ref = analyze_pair(pairs / "photos" / "p2_m00.png", pairs / "photos" / "p2_m10.png", options=AnalysisOptions(method="classical"))
    doc = json.loads((out / "pair-02" / "result.json").read_text())
    assert doc["metrics"]["before"] == json.loads(json.dumps(ref.to_dict()["metrics"]["before"]))
    assert doc["metrics"]["change"] == json.loads(json.dumps(ref.to_dict()["metrics"]["change"]))
    assert float(rows[2]["metrics.before.lesion_area_px"]) == ref.metrics_before.lesion_area_px
    assert not any((out / PARTIAL_DIR).iterdir()) if (out / PARTIAL_DIR).exists() else True


def test_a_missing_photo_fails_its_pair_only(pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"pair_id": "ok", "before": str(pairs / "photos/p0_m00.png"), "after": str(pairs / "photos/p0_m10.png")},
        {"pair_id": "gone", "before": str(pairs / "photos/p0_m00.png"), "after": str(tmp_path / "missing.png")},
    ]
    m = write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    code = main(["batch", str(m), "-o", str(out), "--quiet", "--method", "classical", "--workers", "0"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 1
    res = {r["pair_id"]: r for r in read_results(out / "results.csv")}
    assert res["gone"]["status"] == "failed" and "missing.png" in res["gone"]["error"]
    assert res["ok"]["status"] in ("done", "failed") and "missing" not in res["ok"]["error"]
    assert "1 failed" in last if res["ok"]["status"] == "done" else "2 failed" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "out"]


def test_resume_skips_current_pairs_and_redoes_changed_ones(pairs: Path, tmp_path: Path, classical_run: BatchSummary) -> None:
    out = tmp_path / "out"
    shutil.copytree(classical_run.out, out)
    first = classical_run
    failed = {o.pair_id for o in first.outcomes if o.status == "failed"}
    again = run_batch(pairs / "manifest.csv", out, options=classical(resume=True))
    assert {o.pair_id for o in again.outcomes if o.status == "skipped"} == {f"pair-{i:02d}" for i in range(N_PAIRS)} - failed
    assert {o.pair_id for o in again.outcomes if o.status != "skipped"} == failed  # failures are retried
    # A changed photo: that pair only is recomputed.
    changed = pairs / "changed"
    changed.mkdir(exist_ok=True)
    img = render_pair(100, size=SIZE).after.copy()
    img[0, 0] ^= 1
    write_png(changed / "p0_m10.png", img)
    rows = list(csv.DictReader(open(pairs / "manifest.csv", encoding="utf-8")))
    rows[0]["after"] = "changed/p0_m10.png"
    m2 = write_manifest(pairs / "manifest_changed.csv", rows)
    third = run_batch(m2, out, options=classical(resume=True))
    redone = {o.pair_id for o in third.outcomes if o.status != "skipped"}
    assert redone == {"pair-00"} | failed
    # Changed settings: everything is recomputed.
    opts = BatchOptions(analysis=AnalysisOptions(method="classical", min_lesion_area_px=3), workers=0, progress=False, resume=True)
    fourth = run_batch(m2, out, options=opts)
    assert fourth.count("skipped") == 0
    # A damaged folder (a file deleted) is recomputed too.
    (out / "pair-03" / "figure.png").unlink()
    fifth = run_batch(m2, out, options=opts)
    assert {o.pair_id for o in fifth.outcomes if o.status != "skipped"} == {"pair-03"} | {o.pair_id for o in fourth.outcomes if o.status == "failed"}


def test_shards_merge_into_one_results_csv(pairs: Path, tmp_path: Path, classical_run: BatchSummary) -> None:
    whole = classical_run
    run_batch(pairs / "manifest.csv", tmp_path / "sharded", options=classical(shard=(1, 2)))
    part = read_results(tmp_path / "sharded" / "results.csv")
    assert [r["status"] for r in part].count("pending") == N_PAIRS // 2
    run_batch(pairs / "manifest.csv", tmp_path / "sharded", options=classical(shard=(2, 2)))
    assert read_results(tmp_path / "sharded" / "results.csv") == read_results(whole.results_csv)


def test_worker_pipeline_batches_pairs_on_the_device(pairs: Path, tmp_path: Path) -> None:
    from imgtool.segmentation import load_model

    cnn = BatchOptions(analysis=AnalysisOptions(method="cnn"), device="cpu", workers=2, progress=False)
    s = run_batch(pairs / "manifest.csv", tmp_path / "pipe", options=cnn)
    assert s.device is not None and s.device.photos == 2 * N_PAIRS and 1 <= s.device.calls <= N_PAIRS
    assert 0 < s.device.busy_fraction < 1
    # The same numbers as the one-process path.
    ref = run_batch(pairs / "manifest.csv", tmp_path / "inline", options=BatchOptions(device="cpu", workers=0, progress=False))
    assert read_results(s.results_csv) == read_results(ref.results_csv)
    doc = json.loads((tmp_path / "pipe" / "pair-01" / "result.json").read_text())
    assert doc["model"]["sha256"] == load_model(None, device="cpu").sha256


def test_dask_local_cluster_gives_the_same_numbers(pairs: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    rows = list(csv.DictReader(open(pairs / "manifest.csv", encoding="utf-8")))[:2]
    m = write_manifest(pairs / "manifest_2.csv", rows)
    local = run_batch(m, tmp_path / "local", options=BatchOptions(device="cpu", workers=0, progress=False))
    dask = run_batch(m, tmp_path / "dask", options=BatchOptions(device="cpu", dask_local=2, progress=False))
    assert dask.count("done") + dask.count("failed") == 2
    a, b = read_results(local.results_csv), read_results(dask.results_csv)
    assert a == b
    again = run_batch(m, tmp_path / "dask", options=BatchOptions(device="cpu", dask_local=2, progress=False, resume=True))
    assert again.count("skipped") == dask.count("done")


def test_kill_and_resume_gives_the_uninterrupted_results(pairs: Path, tmp_path: Path) -> None:
    """SIGKILL a running batch (its whole process group) after the first pair lands, resume, compare."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "imgtool", "batch", str(pairs / "manifest.csv"), "--quiet", "--device", "cpu", "--workers", "1"]
    # The uninterrupted reference runs in this process (the same stages; test_worker_pipeline_* checks that
    # the one-process and worker paths agree).
    ref = run_batch(pairs / "manifest.csv", tmp_path / "ref", options=BatchOptions(device="cpu", workers=0, progress=False))
    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in out.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the batch finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    landed = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert 1 <= len(landed) < N_PAIRS
    assert all((p / BATCH_JSON).is_file() for p in landed)  # every visible folder is complete
    resumed = subprocess.run([*cmd, "-o", str(out), "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == (0 if ref.ok else 1), resumed.stderr
    n_skipped = int(resumed.stdout.strip().splitlines()[-1].split(" skipped")[0].rsplit(" ", 1)[1])
    done_before = sum(json.loads((p / BATCH_JSON).read_text())["status"] == "done" for p in landed)
    assert n_skipped == done_before
    assert read_results(out / "results.csv") == read_results(tmp_path / "ref" / "results.csv")
    assert not any((out / PARTIAL_DIR).rglob("*.png"))


def test_outputs_never_leave_out(pairs: Path, tmp_path: Path) -> None:
    rows = [{"pair_id": "a", "before": str(pairs / "photos/p1_m00.png"), "after": str(pairs / "photos/p1_m10.png")}]
    m = write_manifest(tmp_path / "m.csv", rows)
    before = {p for p in tmp_path.rglob("*")}
    run_batch(m, tmp_path / "out", options=classical())
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(tmp_path / "out" in p.parents or p == tmp_path / "out" for p in new)
    assert np.isfinite(float(read_results(tmp_path / "out" / "results.csv")[0]["metrics.before.skin_area_px"]))


@pytest.mark.parametrize("shard", ["0/2", "3/2", "1-2", "a/b"])
def test_bad_shard_is_a_usage_error(pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], shard: str) -> None:
    code = main(["batch", str(pairs / "manifest.csv"), "-o", str(tmp_path / "out"), "--shard", shard, "--quiet"])
    assert code == 2 and "--shard" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
