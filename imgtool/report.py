"""Writing results: the output contract of ``analyze`` and ``segment``.

Every file is written atomically (see :mod:`imgtool.io`), images without metadata, and
``result.json`` last, so its presence means the folder is complete.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from .io import PathLike, ensure_output_dir, write_bytes, write_csv, write_json, write_png
from .pipeline import DISPLACEMENT_FILE, PairAnalysis
from .segmentation import SegmentResult

logger = logging.getLogger(__name__)

RESULT_JSON = "result.json"
METRICS_CSV = "metrics.csv"


def flatten(d: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Flatten nested dicts into ``{"a.b.c": value}``; lists become their JSON-like text.

    The homography becomes nine columns ``registration.homography.00`` .. ``22``.
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
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
    reg = result.registration
    if reg.displacement is not None and reg.homography is not None:
        write_bytes(out / DISPLACEMENT_FILE, reg.displacement.to_npz_bytes(reg.homography))
        files[DISPLACEMENT_FILE] = out / DISPLACEMENT_FILE
    doc = result.to_dict()
    write_csv(out / METRICS_CSV, [flatten(doc)])
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
