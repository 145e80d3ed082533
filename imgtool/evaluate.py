"""Scoring the pipeline against known truth: phantom pairs and real photos with masks.

Two kinds of evaluation, both running imgtool's real pipeline with the chosen method:

* **Phantoms** (:func:`evaluate_phantoms`): every pair goes through
  :func:`imgtool.pipeline.analyze_pair`. Reported per photo: Dice and IoU of each class
  against the exact label maps; per pair: the registration error (mean distance in
  BEFORE pixels between where the estimated homography and the true motion put
  AFTER's four corners, and the lesion centroids) and the absolute error of every
  ``metrics.change`` field against the truth.
* **Real photos with masks** (:func:`evaluate_masks`): every photo goes through
  :func:`imgtool.segmentation.segment_labels`; the pixels predicted as the chosen
  class (``lesion`` or ``hair``) are compared with the mask: Dice, IoU, sensitivity,
  precision and the area error.

Summaries give the mean over images (images where a score is undefined, e.g. Dice
with both masks empty, are left out and counted) and the pooled score over all
pixels of all images.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, Sequence

import cv2
import numpy as np

from .datasets import MaskConvention, detect_convention, find_pairs, read_binary_mask, select_ids
from .errors import InputError, UsageError
from .io import PathLike, ensure_output_dir, read_image, write_csv, write_json
from .labels import CLASS_NAMES, HAIR, LESION
from .registration import image_corners, map_points

if TYPE_CHECKING:
    from .pipeline import AnalysisOptions

logger = logging.getLogger(__name__)

CHANGE_FIELDS: tuple[str, ...] = (
    "lesion_area_change_rel",
    "lesion_fraction_change",
    "hair_coverage_change",
    "new_lesion_px",
    "resolved_lesion_px",
    "persistent_lesion_px",
    "regrown_hair_px",
    "lost_hair_px",
    "common_area_px",
    "lesion_area_before_common_px",
    "lesion_area_after_common_px",
    "hair_coverage_before_common",
    "hair_coverage_after_common",
    "hair_coverage_change_common",
)
PHOTO_FIELDS: tuple[str, ...] = ("lesion_fraction", "hair_coverage")
MASK_CLASSES: dict[str, int] = {"lesion": LESION, "hair": HAIR}


# --------------------------------------------------------------------------- scores


def overlap_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """True-positive, false-positive and false-negative pixel counts of two binary masks.

    Raises
    ------
    ValueError
        If the masks differ in shape.
    """
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"masks must have the same shape, got {p.shape} and {t.shape}")
    tp = int(np.count_nonzero(p & t))
    return tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(t)) - tp


def scores_from_counts(tp: int, fp: int, fn: int) -> dict[str, float | int | None]:
    """Dice, IoU, sensitivity, precision and area errors from pixel counts.

    Each ratio is None where its denominator is 0 (e.g. Dice when both masks are empty).

    Examples
    --------
    >>> s = scores_from_counts(tp=2, fp=1, fn=1)
    >>> round(s["dice"], 4), s["iou"], s["area_error_px"]
    (0.6667, 0.5, 0)
    """
    true_area, pred_area = tp + fn, tp + fp
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None,
        "iou": tp / (tp + fp + fn) if (tp + fp + fn) else None,
        "sensitivity": tp / true_area if true_area else None,
        "precision": tp / pred_area if pred_area else None,
        "true_area_px": true_area,
        "pred_area_px": pred_area,
        "area_error_px": pred_area - true_area,
        "area_error_rel": (pred_area - true_area) / true_area if true_area else None,
    }


def overlap_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float | int | None]:
    """Dice, IoU, sensitivity, precision and area error of a predicted vs a true mask.

    Parameters
    ----------
    pred, truth : (H, W) bool ndarray
        Predicted and true masks.

    Returns
    -------
    dict
        See :func:`scores_from_counts`.
    """
    return scores_from_counts(*overlap_counts(pred, truth))


def _stats(values: Sequence[float | None]) -> dict[str, float | int | None]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "median": None, "p90": None, "max": None}
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)), "p90": float(np.quantile(v, 0.9)), "max": float(v.max())}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate_phantoms` or :func:`evaluate_masks` measured.

    Attributes
    ----------
    kind : str
        ``"phantoms"`` or ``"masks"``.
    settings : dict
        Method, source, class and selection.
    rows : tuple of dict
        One row per photo.
    pair_rows : tuple of dict
        One row per pair (phantoms only).
    summary : dict
        Means, medians and pooled scores.
    """

    kind: str
    settings: dict[str, Any]
    rows: tuple[dict[str, Any], ...] = field(repr=False)
    pair_rows: tuple[dict[str, Any], ...] = field(repr=False)
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        from ._version import __version__

        return {
            "schema_version": 1,
            "imgtool_version": __version__,
            "kind": self.kind,
            "settings": self.settings,
            "summary": self.summary,
            "photos": list(self.rows),
            "pairs": list(self.pair_rows),
        }


# --------------------------------------------------------------------------- phantoms


def _lesion_points(pair: Any, min_area: int = 20) -> np.ndarray:
    """AFTER-frame points at lesions: AFTER's lesion centroids and BEFORE's, pulled back."""
    from .synth import before_to_after_maps

    pts = []
    for labels in (pair.after_labels, pair.before_labels):
        n, _, stats, cents = cv2.connectedComponentsWithStats((labels == LESION).astype(np.uint8), connectivity=8)
        keep = cents[1:][stats[1:, cv2.CC_STAT_AREA] >= min_area]
        if labels is pair.after_labels:
            pts.extend(keep.tolist())
        elif len(keep):
            mx, my = before_to_after_maps(pair.homography, pair.displacement, pair.before_labels.shape)
            ha, wa = pair.after_labels.shape
            for x, y in keep:
                xi, yi = int(round(x)), int(round(y))
                ax, ay = float(mx[yi, xi]), float(my[yi, xi])
                if 0 <= ax <= wa - 1 and 0 <= ay <= ha - 1:
                    pts.append([ax, ay])
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def registration_errors(h_est: np.ndarray | None, pair: Any) -> dict[str, float | int | None]:
    """Corner and lesion-centroid registration errors of an estimated homography.

    Parameters
    ----------
    h_est : (3, 3) ndarray or None
        Estimated AFTER -> BEFORE homography (None: registration failed).
    pair : PhantomPair
        The pair with its true motion.

    Returns
    -------
    dict
        ``corner_error_px`` (mean over AFTER's four corners), ``centroid_error_px``
        (mean over lesion centroids; None when there are no lesions), ``centroid_count``;
        distances in BEFORE pixels.
    """
    from .synth import map_after_to_before

    pts = _lesion_points(pair)
    if h_est is None:
        return {"corner_error_px": None, "centroid_error_px": None, "centroid_count": int(len(pts))}
    corners = image_corners(pair.after.shape[:2])
    true_c = map_after_to_before(corners, pair.homography, pair.displacement)
    corner = float(np.linalg.norm(map_points(h_est, corners) - true_c, axis=1).mean())
    cent = None
    if len(pts):
        true_p = map_after_to_before(pts, pair.homography, pair.displacement)
        cent = float(np.linalg.norm(map_points(h_est, pts) - true_p, axis=1).mean())
    return {"corner_error_px": corner, "centroid_error_px": cent, "centroid_count": int(len(pts))}


def _abs_err(est: Any, true: Any) -> float | None:
    if est is None or true is None:
        return None
    return abs(float(est) - float(true))


def _class_cells(est: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for k, name in enumerate(CLASS_NAMES):
        tp, fp, fn = overlap_counts(est == k, true == k)
        s = scores_from_counts(tp, fp, fn)
        row[f"dice_{name}"] = s["dice"]
        row[f"iou_{name}"] = s["iou"]
        row[f"tp_{name}"], row[f"fp_{name}"], row[f"fn_{name}"] = tp, fp, fn
    return row


def evaluate_pair(
    pair: Any, *, pair_id: str, options: AnalysisOptions | None = None, model: Any = None, device: str = "auto", batch_size: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the pipeline on one phantom pair and score it.

    Parameters
    ----------
    pair : PhantomPair
        Photos and truth.
    pair_id : str
        Name used in the rows.
    options : AnalysisOptions, optional
        The pipeline's settings, exactly as :func:`imgtool.pipeline.analyze_pair` takes
        them (method, test-time augmentation, reconciliation, ...); default
        ``AnalysisOptions()``, what ``imgtool analyze`` runs.
    model : SegmentationModel, optional
        The CNN (method ``"cnn"``); default the shipped model, loaded on ``device``.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the CNN when ``model`` is None.
    batch_size : int, optional
        Tiles per CNN forward pass (default 1 on the CPU, 16 on CUDA).

    Returns
    -------
    photo_rows : list of dict
        BEFORE's and AFTER's per-class Dice and IoU, and per-photo metric errors.
    pair_row : dict
        Registration status and errors, and every change field (true, estimated,
        absolute error).
    """
    from .pipeline import analyze_pair

    res = analyze_pair(pair.before, pair.after, options=options, model=model, device=device, batch_size=batch_size)
    est_metrics = res.to_dict()["metrics"]
    true_metrics = pair.truth["metrics"]
    photo_rows = []
    for which, est, true in (("before", res.before_labels, pair.before_labels), ("after", res.after_labels, pair.after_labels)):
        row: dict[str, Any] = {"id": pair_id, "photo": which}
        row.update(_class_cells(est, true))
        for f in PHOTO_FIELDS:
            row[f"true_{f}"] = true_metrics[which][f]
            row[f"est_{f}"] = est_metrics[which][f]
            row[f"abs_err_{f}"] = _abs_err(est_metrics[which][f], true_metrics[which][f])
        photo_rows.append(row)
    reg = res.registration
    pair_row: dict[str, Any] = {"id": pair_id, "seed": pair.truth.get("seed"), "registration_status": reg.status}
    pair_row.update(registration_errors(reg.homography if reg.aligned else None, pair))
    pair_row["nonrigid"] = pair.displacement is not None
    scene = pair.truth.get("scene", {})
    pair_row["view"] = scene.get("view")
    pair_row["fitzpatrick"] = scene.get("fitzpatrick")
    for f in CHANGE_FIELDS:
        t = true_metrics["change"].get(f)
        e = est_metrics["change"].get(f)
        pair_row[f"true_{f}"] = t
        pair_row[f"est_{f}"] = e
        pair_row[f"abs_err_{f}"] = _abs_err(e, t)
    return photo_rows, pair_row


def _segmentation_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in CLASS_NAMES:
        tp = sum(r[f"tp_{name}"] for r in rows)
        fp = sum(r[f"fp_{name}"] for r in rows)
        fn = sum(r[f"fn_{name}"] for r in rows)
        pooled = scores_from_counts(tp, fp, fn)
        dice = _stats([r[f"dice_{name}"] for r in rows])
        iou = _stats([r[f"iou_{name}"] for r in rows])
        out[name] = {
            "dice_mean": dice["mean"],
            "iou_mean": iou["mean"],
            "dice_median": dice["median"],
            "dice_pooled": pooled["dice"],
            "iou_pooled": pooled["iou"],
            "photos_scored": dice["n"],
            "photos_undefined": len(rows) - dice["n"],
        }
    return out


def summarize_phantoms(photo_rows: Sequence[dict[str, Any]], pair_rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary of phantom rows: segmentation per class, registration, change errors."""
    reg = {
        "pairs": len(pair_rows),
        "failed": sum(1 for r in pair_rows if r["registration_status"] == "failed"),
        "low_confidence": sum(1 for r in pair_rows if r["registration_status"] == "low_confidence"),
        "corner_error_px": _stats([r["corner_error_px"] for r in pair_rows]),
        "centroid_error_px": _stats([r["centroid_error_px"] for r in pair_rows]),
    }
    change = {f: {k: v for k, v in _stats([r[f"abs_err_{f}"] for r in pair_rows]).items() if k in ("n", "mean", "median", "max")} for f in CHANGE_FIELDS}
    photo = {f: {k: v for k, v in _stats([r[f"abs_err_{f}"] for r in photo_rows]).items() if k in ("n", "mean", "median", "max")} for f in PHOTO_FIELDS}
    return {"segmentation": _segmentation_summary(photo_rows), "registration": reg, "change_abs_error": change, "photo_abs_error": photo}


def phantom_source(
    n: int,
    seed: int,
    *,
    size: tuple[int, int] = (1024, 1024),
    options: Any = None,
    change: Literal["random", "none"] | Any = "random",
) -> Iterator[tuple[str, Any]]:
    """``(id, pair)`` for ``n`` phantom pairs drawn in memory, as ``imgtool synth`` would draw them."""
    from .synth import render_pair
    from .synth.store import pair_id, pair_seed

    for i in range(n):
        yield pair_id(seed, i), render_pair(pair_seed(seed, i), size=size, options=options, change=change)


def evaluate_phantoms(
    pairs: Iterable[tuple[str, Any]],
    *,
    options: AnalysisOptions | None = None,
    source: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
) -> Evaluation:
    """Score the pipeline on phantom pairs.

    Parameters
    ----------
    pairs : iterable of (id, PhantomPair)
        From :func:`phantom_source` or :func:`imgtool.synth.store.iter_pairs`.
    options : AnalysisOptions, optional
        The pipeline's settings (:class:`imgtool.pipeline.AnalysisOptions`: method,
        ``augment``, ``reconcile``, ``local_light``, ...); default ``AnalysisOptions()``,
        what ``imgtool analyze`` runs (the shipped CNN).
    source : str, optional
        Where the pairs came from, for the settings.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the CNN.
    batch_size : int, optional
        Tiles per CNN forward pass (default 1 on the CPU, 16 on CUDA).

    Returns
    -------
    Evaluation

    Raises
    ------
    UsageError
        No pairs, an unknown method, or CUDA asked for without one.
    """
    from .pipeline import AnalysisOptions
    from .segmentation import model_info, prepare_model

    opts = AnalysisOptions() if options is None else options
    model = prepare_model(opts.method, None, device, augment=opts.augment)  # loaded once, not per pair
    photo_rows: list[dict[str, Any]] = []
    pair_rows: list[dict[str, Any]] = []
    for pid, pair in pairs:
        pr, row = evaluate_pair(pair, pair_id=pid, options=opts, model=model, batch_size=batch_size)
        photo_rows.extend(pr)
        pair_rows.append(row)
        logger.info("%s: registration %s, corner error %s px", pid, row["registration_status"], row["corner_error_px"])
    if not pair_rows:
        raise UsageError("no phantom pairs to evaluate")
    # The model's name and sha256 go with the scores: numbers without them cannot be told apart across releases.
    settings = {
        "method": opts.method,
        "model": model_info(opts.method, model),
        "augment": opts.augment,
        "reconcile": opts.reconcile,
        "local_light": opts.local_light,
        "nonrigid": opts.registration.nonrigid,
        "source": source,
        "pairs": len(pair_rows),
    }
    return Evaluation("phantoms", settings, tuple(photo_rows), tuple(pair_rows), summarize_phantoms(photo_rows, pair_rows))


# --------------------------------------------------------------------------- real photos with masks


def evaluate_masks(
    folder: PathLike,
    *,
    mask_class: str | None = None,
    method: str = "classical",
    convention: MaskConvention | None = None,
    ids: Sequence[str] | None = None,
    batch: int = 8,
    augment: bool = False,
    device: str = "auto",
    batch_size: int | None = None,
) -> Evaluation:
    """Score one class of the segmentation on a folder of real photos with masks.

    Parameters
    ----------
    folder : path-like
        Photos and masks (see :mod:`imgtool.datasets` for the naming conventions).
    mask_class : {"lesion", "hair"}, optional
        Which class the masks mark; by default the convention's (``suffix`` masks are
        lesions, ``figaro`` and ``celeba`` masks hair).
    method : str
        Segmentation method.
    convention : MaskConvention, optional
        How photos and masks are paired; detected when not given.
    ids : sequence of str, optional
        Score only these photos (ids or file names), e.g. a held-out split.
    batch : int
        Photos segmented per call.
    augment : bool
        CNN test-time augmentation (mirror images).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the CNN.
    batch_size : int, optional
        Tiles per CNN forward pass (default 1 on the CPU, 16 on CUDA).

    Returns
    -------
    Evaluation

    Raises
    ------
    UsageError
        Unknown class or method, an id that is not in the folder, or no class given
        where the convention does not imply one.
    InputError
        Unreadable photos or masks, or no pairs found.
    """
    from .segmentation import check_method, model_info, prepare_model, segment_labels

    check_method(method)
    conv = convention or detect_convention(folder)
    cls = mask_class or conv.mask_class
    if cls not in MASK_CLASSES:
        raise UsageError(f"--class must be one of {', '.join(MASK_CLASSES)} for {folder} (got {cls!r})")
    pairs = select_ids(find_pairs(folder, conv), ids)
    if not pairs:
        raise InputError(f"{folder}: no photo/mask pairs under the {conv.name!r} convention")
    label = MASK_CLASSES[cls]
    model = prepare_model(method, None, device, augment=augment)  # loaded once, not per chunk
    rows: list[dict[str, Any]] = []
    for start in range(0, len(pairs), max(1, batch)):
        chunk = pairs[start : start + batch]
        images = [read_image(p)[0] for _, p, _ in chunk]
        preds = segment_labels(images, method=method, model=model, batch_size=batch_size)
        for (pid, img_path, mask_path), img, pred in zip(chunk, images, preds):
            truth = read_binary_mask(mask_path, conv.threshold, img.shape[:2], conv.mask_scale)
            tp, fp, fn = overlap_counts(pred == label, truth)
            rows.append({"id": pid, "image": img_path.name, "width": img.shape[1], "height": img.shape[0], **scores_from_counts(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn})
    summary: dict[str, Any] = {"images": len(rows)}
    for key in ("dice", "iou", "sensitivity", "precision", "area_error_rel"):
        st = _stats([r[key] for r in rows])
        summary[key] = {"mean": st["mean"], "median": st["median"], "n": st["n"]}
    summary["abs_area_error_rel"] = {k: v for k, v in _stats([None if r["area_error_rel"] is None else abs(r["area_error_rel"]) for r in rows]).items() if k in ("mean", "median", "n")}
    pooled = scores_from_counts(sum(r["tp"] for r in rows), sum(r["fp"] for r in rows), sum(r["fn"] for r in rows))
    summary["pooled"] = {k: pooled[k] for k in ("dice", "iou", "sensitivity", "precision", "area_error_rel")}
    settings = {
        "method": method,
        "model": model_info(method, model),
        "augment": augment,
        "source": str(folder),
        "class": cls,
        "convention": conv.to_dict(),
        "ids": None if ids is None else list(ids),
    }
    return Evaluation("masks", settings, tuple(rows), (), summary)


# --------------------------------------------------------------------------- output


def _flatten(d: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            yield from _flatten(v, key)
        else:
            yield key, v


def write_evaluation(ev: Evaluation, out_dir: PathLike) -> dict[str, Path]:
    """Write ``evaluation.json``, ``summary.csv``, ``per_photo.csv`` (and ``per_pair.csv``).

    Returns
    -------
    dict of str -> Path
        The files written.
    """
    out = ensure_output_dir(out_dir)
    files = {"json": out / "evaluation.json", "summary": out / "summary.csv", "photos": out / "per_photo.csv"}
    write_json(files["json"], ev.to_dict())
    write_csv(files["summary"], [{"metric": k, "value": v} for k, v in _flatten(ev.summary)], ["metric", "value"])
    write_csv(files["photos"], list(ev.rows))
    if ev.pair_rows:
        files["pairs"] = out / "per_pair.csv"
        write_csv(files["pairs"], list(ev.pair_rows))
    return files


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_table(ev: Evaluation) -> str:
    """A plain-text summary table for the terminal."""
    lines = []
    s = ev.summary
    if ev.kind == "phantoms":
        lines.append(f"phantom pairs: {ev.settings['pairs']}   method: {ev.settings['method']}")
        lines.append("")
        lines.append(f"{'class':<12}{'Dice mean':>10}{'IoU mean':>10}{'Dice pooled':>13}{'IoU pooled':>12}{'photos':>8}")
        for name in CLASS_NAMES:
            c = s["segmentation"][name]
            lines.append(f"{name:<12}{_fmt(c['dice_mean']):>10}{_fmt(c['iou_mean']):>10}{_fmt(c['dice_pooled']):>13}{_fmt(c['iou_pooled']):>12}{c['photos_scored']:>8}")
        r = s["registration"]
        lines.append("")
        lines.append(f"registration: {r['pairs']} pairs, {r['failed']} failed, {r['low_confidence']} low confidence")
        for key in ("corner_error_px", "centroid_error_px"):
            st = r[key]
            lines.append(f"  {key:<20} mean {_fmt(st['mean'], 2)}  median {_fmt(st['median'], 2)}  p90 {_fmt(st['p90'], 2)}  max {_fmt(st['max'], 2)}  (n={st['n']})")
        lines.append("")
        lines.append(f"{'change field':<32}{'MAE':>14}{'median AE':>14}{'n':>5}")
        for f in CHANGE_FIELDS:
            st = s["change_abs_error"][f]
            d = 4 if not f.endswith("_px") else 1
            lines.append(f"{f:<32}{_fmt(st['mean'], d):>14}{_fmt(st['median'], d):>14}{st['n']:>5}")
        for f in PHOTO_FIELDS:
            st = s["photo_abs_error"][f]
            lines.append(f"{'photo ' + f:<32}{_fmt(st['mean'], 4):>14}{_fmt(st['median'], 4):>14}{st['n']:>5}")
    else:
        lines.append(f"{ev.settings['source']}: {s['images']} photos, class {ev.settings['class']}, method {ev.settings['method']}")
        lines.append(f"{'score':<22}{'mean':>9}{'median':>9}{'pooled':>9}")
        for key in ("dice", "iou", "sensitivity", "precision", "area_error_rel"):
            lines.append(f"{key:<22}{_fmt(s[key]['mean']):>9}{_fmt(s[key]['median']):>9}{_fmt(s['pooled'][key]):>9}")
        lines.append(f"{'|area_error_rel|':<22}{_fmt(s['abs_area_error_rel']['mean']):>9}{_fmt(s['abs_area_error_rel']['median']):>9}")
    return "\n".join(lines)


def describe_source(path: PathLike) -> Literal["phantoms", "masks"]:
    """Whether a folder holds phantom pairs (truth.json files) or photos with masks."""
    root = Path(path)
    if (root / "truth.json").is_file() or any(root.glob("*/truth.json")):
        return "phantoms"
    return "masks"
