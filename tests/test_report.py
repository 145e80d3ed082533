"""The outputs of ``analyze``: report.html, figure.png, metrics.csv, lesions.csv.

The report is opened in a real headless browser (Debian's chromium) when one is
installed: it must render, log no error, and make no request that leaves the page.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgtool
from imgtool.figure import (
    BLUE,
    BLUISH_GREEN,
    ORANGE,
    REDDISH_PURPLE,
    SKY_BLUE,
    VERMILLION,
    change_map,
    describe_pair,
)
from imgtool.labels import HAIR, LESION, SKIN
from imgtool.pipeline import AnalysisOptions
from imgtool.report import LESION_COLUMNS, flatten, metrics_row

XSS_NAME = "<img src=x onerror=alert(1)>.png"


@pytest.fixture(scope="module")
def analysis(scene_pair: dict) -> imgtool.PairAnalysis:
    return imgtool.analyze_pair(
        scene_pair["before"], scene_pair["after"], options=AnalysisOptions(method="classical", pixel_size_mm=0.2)
    )


@pytest.fixture(scope="module")
def written(analysis: imgtool.PairAnalysis, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    imgtool.write_analysis(analysis, out)
    return out


class _Tags(HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html_text: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Tags()
    p.feed(html_text)
    return p.tags


# --------------------------------------------------------------------------- files


def test_outputs_written(written: Path, analysis: imgtool.PairAnalysis) -> None:
    for name in ("report.html", "figure.png", "metrics.csv", "lesions.csv", "result.json"):
        assert (written / name).stat().st_size > 0, name
    fig = Image.open(written / "figure.png")
    assert fig.mode == "RGB" and fig.width >= 3 * 400 and fig.height >= 2 * 300
    assert not fig.info.get("exif") and not getattr(fig, "text", {})


def test_report_is_self_contained(written: Path) -> None:
    text = (written / "report.html").read_text(encoding="utf-8")
    tags = _tags(text)
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed", "base")]
    imgs = [a for t, a in tags if t == "img"]
    assert len(imgs) >= 8  # case pair, plain pair, overlays, two change maps, checkerboard
    for a in imgs:
        assert (a.get("src") or "").startswith("data:image/"), a.get("src", "")[:40]
        assert a.get("alt"), "every image needs alt text"
    # Nothing that a browser would fetch: no URL with a scheme or a protocol-relative one.
    no_data = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(?i)\b(?:https?|ftp|file):|url\(|@import|src=\"//", no_data)
    csp = [a for t, a in tags if t == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    for needle in ("Registration quality", "Provenance", "Lesion by lesion", "EASI area score", "Hair loss (SALT style)"):
        assert needle in text
    assert "@media print" in text


def test_report_names_every_element(written: Path, analysis: imgtool.PairAnalysis) -> None:
    text = (written / "report.html").read_text(encoding="utf-8")
    assert analysis.before.sha256 in text and analysis.after.sha256 in text
    assert imgtool.__version__ in text
    assert analysis.registration.status in text
    # Legends in words for every colour-coded picture.
    for words in ("persistent lesion", "resolved lesion", "new lesion", "regrown hair", "lost hair", "lesion outline"):
        assert words in text


def test_metrics_csv_is_one_flat_row(written: Path, analysis: imgtool.PairAnalysis) -> None:
    with open(written / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    doc = json.loads((written / "result.json").read_text())
    flat = flatten(doc)
    assert list(rows[0]) == list(flat) == list(metrics_row(analysis))
    assert not any(k.endswith(".items") for k in flat)
    row = rows[0]
    assert int(row["metrics.before.lesion_area_px"]) == doc["metrics"]["before"]["lesion_area_px"]
    assert float(row["metrics.change.lesion_area_change_rel"]) == pytest.approx(doc["metrics"]["change"]["lesion_area_change_rel"])
    assert int(row["metrics.lesions.fates.count_before"]) == doc["metrics"]["lesions"]["fates"]["count_before"]
    assert int(row["metrics.before.easi_area_score"]) == doc["metrics"]["before"]["easi_area_score"]


def test_metrics_csv_columns_do_not_depend_on_registration(
    analysis: imgtool.PairAnalysis, scene_pair: dict, rng: np.random.Generator
) -> None:
    noise = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    failed = imgtool.analyze_pair(scene_pair["before"], noise, options=AnalysisOptions(method="classical", pixel_size_mm=0.2))
    assert failed.registration.status == "failed"
    ok_cols = [k for k in metrics_row(analysis) if not k.startswith("registration.quality")]
    failed_row = metrics_row(failed)
    failed_cols = [k for k in failed_row if not k.startswith("registration.quality")]
    assert ok_cols == failed_cols
    assert failed_row["metrics.lesions.fates.resolved"] is None and failed_row["registration.homography.00"] is None


def test_lesions_csv_matches_fates(written: Path, analysis: imgtool.PairAnalysis) -> None:
    with open(written / "lesions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fates = analysis.lesions.fates
    assert len(rows) == len(fates.items) > 0
    assert tuple(rows[0]) == LESION_COLUMNS
    assert [r["fate"] for r in rows] == [f.fate for f in fates.items]
    assert sum(float(r["area_before_px"]) for r in rows) == fates.before.total_area_px


def test_failed_registration_still_reports(scene_pair: dict, rng: np.random.Generator, tmp_path: Path) -> None:
    noise = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    res = imgtool.analyze_pair(scene_pair["before"], noise, options=AnalysisOptions(method="classical"))
    imgtool.write_analysis(res, tmp_path)
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "could not be aligned" in text and "failed" in text
    assert Image.open(tmp_path / "figure.png").width > 1000
    assert (tmp_path / "lesions.csv").read_text().count("\n") == 1  # header only


# --------------------------------------------------------------------------- escaping


def test_hostile_file_name_and_view_are_text(scene_pair: dict, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    hostile = src / XSS_NAME
    shutil.copy(scene_pair["before"], hostile)
    res = imgtool.analyze_pair(
        hostile, scene_pair["after"], options=AnalysisOptions(method="classical", view="<script>alert(2)</script>")
    )
    imgtool.write_analysis(res, tmp_path / "out")
    text = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in text and "<script>" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert not [a for t, a in _tags(text) if t == "img" and a.get("src") == "x"]
    assert not [t for t, _ in _tags(text) if t == "script"]


# --------------------------------------------------------------------------- pictures


def test_change_map_colours_follow_the_legend() -> None:
    img = np.full((40, 120, 3), 128, np.uint8)
    b = np.full((40, 120), SKIN, np.uint8)
    a = b.copy()
    b[5:15, 5:25] = LESION  # persistent
    a[5:15, 5:25] = LESION
    b[5:15, 45:65] = LESION  # resolved
    a[5:15, 85:105] = LESION  # new
    b[25:35, 5:25] = HAIR  # kept
    a[25:35, 5:25] = HAIR
    a[25:35, 45:65] = HAIR  # regrown
    b[25:35, 85:105] = HAIR  # lost
    les = change_map(img, b, a, kind="lesion").astype(int)
    hair = change_map(img, b, a, kind="hair").astype(int)

    def nearest(pixel: np.ndarray, palette: list[tuple[int, int, int]]) -> tuple[int, int, int]:
        return min(palette, key=lambda c: np.abs(pixel - np.array(c)).sum())

    lesion_palette = [VERMILLION, SKY_BLUE, REDDISH_PURPLE, (170, 170, 170)]
    assert nearest(les[10, 15], lesion_palette) == VERMILLION
    assert nearest(les[10, 55], lesion_palette) == SKY_BLUE
    assert nearest(les[10, 95], lesion_palette) == REDDISH_PURPLE
    assert nearest(les[30, 55], lesion_palette) == (170, 170, 170)  # hair is not a lesion change
    hair_palette = [BLUE, BLUISH_GREEN, ORANGE, (170, 170, 170)]
    assert nearest(hair[30, 15], hair_palette) == BLUE
    assert nearest(hair[30, 55], hair_palette) == BLUISH_GREEN
    assert nearest(hair[30, 95], hair_palette) == ORANGE
    # Outside AFTER's coverage: dark hatching, not a change colour.
    common = np.ones((40, 120), bool)
    common[:, 100:] = False
    assert change_map(img, b, a, common)[20, 110].max() <= 110
    with pytest.raises(ValueError):
        change_map(img, b, a, kind="scale")


@pytest.mark.parametrize(
    "before, after, view, expected",
    [
        ("sample_images/back_month00.jpg", "sample_images/back_month10.jpg", None, ("Back", "month 0", "month 10")),
        ("p7_scalp_w0.png", "p7_scalp_w12.png", None, ("Scalp", "week 0", "week 12")),
        ("IMG_0001.JPG", "IMG_0002.JPG", None, ("", "before", "after")),
        ("a.png", "b.png", "left forearm", ("Left forearm", "before", "after")),
    ],
)
def test_describe_pair(before: str, after: str, view: str | None, expected: tuple[str, str, str]) -> None:
    cap = describe_pair(before, after, view)
    assert (cap.view, cap.before, cap.after) == expected


# --------------------------------------------------------------------------- CLI


def test_cli_options_reach_result(scene_pair: dict, tmp_path: Path) -> None:
    from imgtool.cli import main

    out = tmp_path / "o"
    code = main([
        "analyze", str(scene_pair["before"]), str(scene_pair["after"]), "-o", str(out),
        "--min-lesion-area", "5000", "--view", "chest", "--method", "classical",
    ])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["settings"]["min_lesion_area_px"] == 5000 and doc["settings"]["view"] == "chest"
    assert doc["metrics"]["lesions"]["min_area_px"] == 5000
    assert doc["metrics"]["lesions"]["before"]["count"] == 0  # the scene's patches are far smaller
    assert "Chest" in (out / "report.html").read_text(encoding="utf-8")


def test_cli_salt_on_label_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imgtool.cli import main
    from imgtool.io import write_png

    paths = []
    for k, view in enumerate(("top", "back", "left", "right")):
        lab = np.full((64, 64), HAIR, np.uint8)
        lab[: 16 * k, :] = SKIN  # 0, 25, 50, 75 % hair loss
        write_png(tmp_path / f"{view}.png", lab)
        paths.append(str(tmp_path / f"{view}.png"))
    assert main(["salt", *paths, "--labels", "-o", str(tmp_path / "salt.json")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["salt_score"] == pytest.approx(0.24 * 25 + 0.18 * 50 + 0.18 * 75)
    assert json.loads((tmp_path / "salt.json").read_text()) == doc
    assert main(["salt", *paths[:3], "--labels"]) == 2


# --------------------------------------------------------------------------- a real browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _open_in_browser(browser: str, page: Path, work: Path) -> tuple[Path, list[str], str]:
    """Screenshot ``page`` headless; return the screenshot, the URLs the page asked the
    network stack for, and the browser's log."""
    shot, netlog = work / "shot.png", work / "net.json"
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars", "--disable-dev-shm-usage",
        f"--user-data-dir={work / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--window-size=1280,2400", f"--screenshot={shot}", f"--log-net-log={netlog}",
        page.resolve().as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = json.loads(netlog.read_text())
    names = {v: k for k, v in events["constants"]["logEventTypes"].items()}
    # Requests the page made carry its origin ("null" for a file); the browser's own
    # background requests (update checks and the like) carry "not an origin".
    starts = [ev.get("params", {}) for ev in events["events"] if names.get(ev["type"]) == "URL_REQUEST_START_JOB"]
    urls = [p["url"] for p in starts if "url" in p and p.get("initiator") != "not an origin"]
    return shot, urls, proc.stderr


@pytest.fixture(scope="module")
def browser() -> str:
    path = _chromium()
    if path is None:
        pytest.skip("no chromium installed (apt-get install chromium)")
    return path


def test_browser_check_can_fail(browser: str, tmp_path: Path) -> None:
    # A page that fetches from outside must be caught by the same check.
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><p>x</p><img src="http://127.0.0.1:9/x.png" alt="x">', encoding="utf-8")
    _, urls, _ = _open_in_browser(browser, page, tmp_path)
    assert urls == ["http://127.0.0.1:9/x.png"]


def test_report_opens_in_headless_browser(browser: str, written: Path, tmp_path: Path) -> None:
    shot, urls, log = _open_in_browser(browser, written / "report.html", tmp_path)
    assert urls == [], f"the report made requests: {urls}"
    console = [ln for ln in log.splitlines() if "CONSOLE" in ln or "Refused to" in ln]
    assert console == [], console
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape == (2400, 1280, 3)
    assert img.std() > 20  # photos and text, not a blank page
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 1000
    # The top of the page is the white report with dark text.
    top = img[:80]
    assert (top > 240).all(axis=2).mean() > 0.6 and (top < 80).all(axis=2).mean() > 0.005


@pytest.mark.skipif(sys.platform != "linux", reason="Debian chromium")
def test_hostile_report_runs_no_script(browser: str, scene_pair: dict, tmp_path: Path) -> None:
    hostile = tmp_path / XSS_NAME
    shutil.copy(scene_pair["before"], hostile)
    res = imgtool.analyze_pair(hostile, scene_pair["after"], options=AnalysisOptions(method="classical"))
    imgtool.write_analysis(res, tmp_path / "out")
    dom = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom", (tmp_path / "out" / "report.html").resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    ).stdout  # fmt: skip
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in dom
    assert not [a for t, a in _tags(dom) if t == "img" and a.get("src") == "x"]
