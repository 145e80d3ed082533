"""Writing results: the output contract of ``analyze`` and ``segment``.

``analyze`` writes, into its output folder:

* ``before_labels.png``, ``after_labels.png`` (and ``after_aligned.png``,
  ``after_labels_aligned.png``, ``before_labels_pair.png`` when the pair is aligned): label
  maps, the warped photo, and the two label maps the change metrics compare;
* ``report.html``: one self-contained page a clinician reads (:mod:`imgtool._html`);
* ``figure.png``: the same analysis as one multi-panel figure for papers (:mod:`imgtool.figure`);
* ``metrics.csv``: one row of flat columns, so many analyses concatenate into one table;
* ``lesions.csv``: one row per lesion with its fate;
* ``result.json``: everything, last.

Every file is written atomically (see :mod:`imgtool.io`), images without metadata, and
``result.json`` last, so its presence means the folder is complete.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .io import PathLike, ensure_output_dir, write_bytes, write_csv, write_json, write_png, write_text
from ._html import render_html
from .figure import render_pictures
from .pipeline import DISPLACEMENT_FILE, PairAnalysis
from .segmentation import SegmentResult

logger = logging.getLogger(__name__)

RESULT_JSON = "result.json"
METRICS_CSV = "metrics.csv"
LESIONS_CSV = "lesions.csv"
REPORT_HTML = "report.html"
FIGURE_PNG = "figure.png"

#: Columns of lesions.csv.
LESION_COLUMNS = (
    "lesion",
    "fate",
    "before_id",
    "after_ids",
    "area_before_px",
    "area_after_px",
    "area_change_rel",
    "centroid_x",
    "centroid_y",
    "area_before_mm2",
    "area_after_mm2",
    "area_before_cm2",
    "area_after_cm2",
)


def flatten(d: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Flatten nested dicts into ``{"a.b.c": value}`` for one CSV row.

    The homography becomes nine columns ``registration.homography.00`` .. ``22`` (empty
    when registration failed, so every row has the same columns); lists of values
    become their text joined by ``"; "``; per-object lists (``items``: one entry per
    lesion) are left out: they go to lesions.csv.
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if k == "items" and isinstance(v, (list, tuple)):
            continue
        if k == "homography" and v is None:
            out.update({f"{key}{sep}{i}{j}": None for i in range(3) for j in range(3)})
        elif isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(r, (list, tuple)) for r in v):
            for i, row in enumerate(v):
                for j, x in enumerate(row):
                    out[f"{key}{sep}{i}{j}"] = x
        elif isinstance(v, (list, tuple)):
            out[key] = "; ".join(str(x) for x in v)
        else:
            out[key] = v
    return out


def _none_like(d: Any) -> Any:
    """The same nested structure with every value None (lists emptied)."""
    if isinstance(d, Mapping):
        return {k: _none_like(v) for k, v in d.items()}
    return [] if isinstance(d, list) else None


def _nulls(d: Any) -> Any:
    """The same nested structure with every value None; a matrix (list of lists) keeps its
    shape, since :func:`flatten` gives it a column per element."""
    if isinstance(d, Mapping):
        return {k: _nulls(v) for k, v in d.items()}
    if isinstance(d, list) and d and all(isinstance(r, list) for r in d):
        return [[None] * len(r) for r in d]
    return None


def metrics_row(result: PairAnalysis) -> dict[str, Any]:
    """result.json flattened into one CSV row whose columns depend on the options only.

    Objects that are null when registration failed (lesion fates, redness at the
    month-0 sites, AFTER's physical areas) still get their columns, empty, so that rows
    of many analyses line up. Only ``registration.quality.*`` columns may differ
    (they are whatever evidence the registration recorded).

    Parameters
    ----------
    result : PairAnalysis

    Returns
    -------
    dict of str to value
    """
    from .quantify import HairReconciliation, LesionFates, Lesions, Reconciliation, Redness
    from .registration import Displacement, PhotometricCorrection

    doc = result.to_dict()
    metrics = doc["metrics"]
    shaped = {**doc, "metrics": dict(metrics)}
    if metrics.get("lesions") is not None and metrics["lesions"]["fates"] is None:
        empty = Lesions(np.zeros((0, 0), np.int32), (), 0)
        shaped["metrics"]["lesions"] = {**metrics["lesions"], "fates": _none_like(LesionFates(empty, empty, (), 0.1).to_dict())}
    if metrics.get("redness") is not None:
        blank = _none_like(Redness(0, 0, None, None, None, None, None, None).to_dict())
        red = dict(metrics["redness"])
        for key in ("sites_before", "sites_after"):
            if red[key] is None:
                red[key] = blank
        shaped["metrics"]["redness"] = red
    if result.options.reconcile and metrics.get("reconciliation") is None:
        none = np.zeros((0, 0), np.uint8)
        blank_rec = Reconciliation(none, none, None, 0.0, 0.0, False, False, 0, 0, 0, 0, 0, 0).to_dict()
        shaped["metrics"]["reconciliation"] = _nulls(blank_rec)
    if result.options.reconcile and metrics.get("reconciliation_hair") is None:
        none = np.zeros((0, 0), np.uint8)
        blank_hair = HairReconciliation(none, none, None, 0.0, 0.0, False, 0, 0, 0, 0, 0, 0).to_dict()
        shaped["metrics"]["reconciliation_hair"] = _nulls(blank_hair)
    # The colour correction and the non-rigid field, when asked for, keep their columns
    # when registration failed.
    reg_opts = result.options.registration
    reg_doc = dict(doc["registration"])
    if reg_opts.photometric and reg_doc.get("photometric") is None:
        reg_doc["photometric"] = _nulls(PhotometricCorrection(np.eye(3), np.zeros(3), np.zeros(5), 0, 0.0, 0.0, 0.0).to_dict())
    if reg_opts.nonrigid and reg_doc.get("nonrigid") is None:
        reg_doc["nonrigid"] = _nulls(Displacement(np.zeros((2, 1, 1), np.float32), (1, 1)).to_dict())
    shaped["registration"] = reg_doc
    # AFTER's pixel size comes from the registration scale: without it, empty area columns.
    shaped["metrics"]["after"] = _pad_physical(metrics["before"], metrics["after"])
    if metrics.get("lesions") is not None:
        les = shaped["metrics"]["lesions"]
        shaped["metrics"]["lesions"] = {**les, "after": _pad_physical(les["before"], les["after"])}
    return flatten(shaped)


def _pad_physical(like: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` with an empty ``*_mm2``/``*_cm2`` entry for each that ``like`` has and ``d`` lacks."""
    out = dict(d)
    for key in like:
        if key.endswith(("_mm2", "_cm2")):
            out.setdefault(key, None)
    return out


def lesion_rows(result: PairAnalysis) -> list[dict[str, Any]]:
    """One row per lesion of the aligned pair (its fate, areas, centre in BEFORE's frame).

    Parameters
    ----------
    result : PairAnalysis

    Returns
    -------
    list of dict
        Rows with the keys of :data:`LESION_COLUMNS`; empty when the pair is not aligned.
    """
    les = result.lesions
    if les is None or les.fates is None:
        return []
    rows = []
    n_new = 0
    for fate in les.fates.items:
        d = fate.to_dict(les.fates.pixel_size_mm)
        if fate.before_id is None:
            n_new += 1
        d["lesion"] = f"new {n_new}" if fate.before_id is None else str(fate.before_id)
        d["after_ids"] = " ".join(str(i) for i in fate.after_ids)
        rows.append(d)
    return rows


def write_analysis(result: PairAnalysis, out_dir: PathLike) -> dict[str, Path]:
    """Write the outputs of one pair analysis into ``out_dir``.

    Parameters
    ----------
    result : PairAnalysis
        What :func:`imgtool.analyze_pair` returned.
    out_dir : path-like
        Output folder; created if needed.

    Returns
    -------
    dict of str to Path
        The files written, by role.

    Raises
    ------
    OutputError
        If the folder or a file cannot be written.
    """
    out = ensure_output_dir(out_dir)
    files: dict[str, Path] = {}

    def png(name: str, array: Any) -> None:
        path = out / name
        write_png(path, array)
        files[name] = path

    png("before_labels.png", result.before_labels)
    png("after_labels.png", result.after_labels)
    if result.after_aligned is not None and result.after_labels_aligned is not None:
        png("after_aligned.png", result.after_aligned)
        png("after_labels_aligned.png", result.after_labels_aligned)
        if result.before_labels_pair is not None:
            png("before_labels_pair.png", result.before_labels_pair)
    reg = result.registration
    if reg.displacement is not None and reg.homography is not None:
        write_bytes(out / DISPLACEMENT_FILE, reg.displacement.to_npz_bytes(reg.homography))
        files[DISPLACEMENT_FILE] = out / DISPLACEMENT_FILE
    doc = result.to_dict()
    pics = render_pictures(result)
    png(FIGURE_PNG, pics.figure)
    write_text(out / REPORT_HTML, render_html(result, pics))
    files[REPORT_HTML] = out / REPORT_HTML
    write_csv(out / LESIONS_CSV, lesion_rows(result), fieldnames=LESION_COLUMNS)
    files[LESIONS_CSV] = out / LESIONS_CSV
    write_csv(out / METRICS_CSV, [metrics_row(result)])
    files[METRICS_CSV] = out / METRICS_CSV
    # result.json last: its presence marks a complete output folder.
    write_json(out / RESULT_JSON, doc)
    files[RESULT_JSON] = out / RESULT_JSON
    return files


def write_segmentation(result: SegmentResult, out_dir: PathLike, stem: str) -> dict[str, Path]:
    """Write ``<stem>_labels.png`` and ``<stem>.json`` for one segmented photo.

    Parameters
    ----------
    result : SegmentResult
        What :func:`imgtool.segment` returned.
    out_dir : path-like
        Output folder; created if needed.
    stem : str
        File name stem (normally the photo's).
    """
    out = ensure_output_dir(out_dir)
    labels_path = out / f"{stem}_labels.png"
    json_path = out / f"{stem}.json"
    write_png(labels_path, result.labels)
    write_json(json_path, result.to_dict())
    return {"labels": labels_path, "json": json_path}
