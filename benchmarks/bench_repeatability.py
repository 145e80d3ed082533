"""Repeatability of the change metrics on phantom pairs whose disease did not change.

``imgtool synth --change none`` pairs differ only by camera (pose, zoom, perspective)
and lighting (white balance, exposure, shading). Every reported change is then an
error. The goal (issue 6): ``lesion_area_change_rel`` within 2 % and
``hair_coverage_change`` within 1 fraction point (commercial imaging systems claim
under 2 % week to week).

To say what limits repeatability, each pair is also measured four ways:

* ``truth+trueH``: true label maps, true homography (interpolation of the warp only);
* ``truth+estH``: true label maps, the pipeline's registration (registration error);
* ``seg+trueH``: the pipeline's label maps, the true homography (segmentation noise);
* ``seg+estH``: the pipeline's label maps and registration, without reconciling the
  labels with the photos' colours (``--no-reconcile``);
* ``pipeline``: what ``imgtool analyze`` reports (labels reconciled unless ``--no-reconcile``).

Run::

    python benchmarks/bench_repeatability.py --n 20 --size 1024x768 --seed 5000

It prints a table and writes JSON (default benchmarks/results/bench_repeatability.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.pipeline import AnalysisOptions, analyze_pair
from imgtool.quantify import change_metrics, default_min_lesion_area_px, lesion_fates, photo_metrics
from imgtool.registration import corner_error, coverage_mask, warp_to_before

LESION_GOAL = 0.02  # |lesion_area_change_rel|
HAIR_GOAL = 0.01  # |hair_coverage_change|, fraction points
WAYS = ("truth+trueH", "truth+estH", "seg+trueH", "seg+estH", "pipeline")
FIELDS = ("lesion_area_change_rel", "hair_coverage_change", "hair_coverage_change_common")


def _change(labels_b: np.ndarray, labels_a: np.ndarray, h: np.ndarray) -> dict[str, Any]:
    """Change metrics of a labelled pair aligned with homography ``h``."""
    aligned = warp_to_before(labels_a, h, labels_b.shape, nearest=True)
    common = coverage_mask(h, labels_a.shape, labels_b.shape)
    m_b, m_a = photo_metrics(labels_b), photo_metrics(labels_a)
    return change_metrics(m_b, m_a, labels_b, aligned, common=common).to_dict()


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _stats(values: list[float | None]) -> dict[str, Any]:
    v = np.abs(np.array([x for x in values if x is not None], dtype=np.float64))
    if v.size == 0:
        return {"n": 0}
    return {
        "n": int(v.size),
        "median": float(np.median(v)),
        "p90": float(np.percentile(v, 90)),
        "max": float(v.max()),
        "mean": float(v.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="phantom pairs (default 20)")
    ap.add_argument("--size", default="1024x768", help="WxH of the phantoms (default 1024x768)")
    ap.add_argument("--seed", type=int, default=5000, help="first seed; pairs use seed, seed+1, ... (default 5000)")
    ap.add_argument("--method", default=None, help="segmentation method (default: imgtool's default)")
    ap.add_argument("--augment", action="store_true", help="CNN test-time augmentation (mirror images)")
    ap.add_argument("--no-reconcile", dest="reconcile", action="store_false", help="do not reconcile the aligned labels with the photos' colours")
    ap.add_argument("--no-local-light", dest="local_light", action="store_false", help="reconcile without netting out local changes of light")
    ap.add_argument("--out", default="benchmarks/results/bench_repeatability.json", help="JSON output path")
    args = ap.parse_args(argv)
    try:
        from imgtool.synth import render_pair
    except ImportError:
        print("imgtool.synth is not available (the phantom generator has not landed); nothing to measure", file=sys.stderr)
        return 1
    w, h = (int(x) for x in args.size.lower().split("x"))
    method = {} if args.method is None else {"method": args.method}
    opts = AnalysisOptions(augment=args.augment, reconcile=args.reconcile, local_light=args.local_light, **method)
    rows: list[dict[str, Any]] = []
    model_rec: dict[str, Any] | None = None
    t0 = time.perf_counter()
    for seed in range(args.seed, args.seed + args.n):
        pair = render_pair(seed, size=(w, h), change="none")
        res = analyze_pair(pair.before, pair.after, options=opts)
        model_rec = res.model  # result.json's name and sha256 of the segmenter: which model these numbers are of
        h_true = np.asarray(pair.homography, dtype=np.float64)
        truth = pair.truth["metrics"]["change"]
        h_est = res.registration.homography
        row: dict[str, Any] = {
            "seed": seed,
            "registration": res.registration.status,
            "corner_error_px": None if h_est is None else corner_error(h_est, h_true, pair.after.shape[:2]),
            "truth_lesion_area_change_rel": truth.get("lesion_area_change_rel"),
            "truth_hair_coverage_change": truth.get("hair_coverage_change"),
            "lesion_area_px": res.metrics_before.lesion_area_px,
            "hair_coverage_before": res.metrics_before.hair_coverage,
            "lesions_resolved": None,
            "lesions_new": None,
        }
        ways = {
            "truth+trueH": _change(pair.before_labels, pair.after_labels, h_true),
            "seg+trueH": _change(res.before_labels, res.after_labels, h_true),
            "pipeline": res.change.to_dict(),
        }
        if res.registration.homography is not None:
            ways["truth+estH"] = _change(pair.before_labels, pair.after_labels, res.registration.homography)
            ways["seg+estH"] = _change(res.before_labels, res.after_labels, res.registration.homography)
        for way, ch in ways.items():
            for key in FIELDS:
                row[f"{way}.{key}"] = ch.get(key)
        if res.lesions is not None and res.lesions.fates is not None:
            f = res.lesions.fates
            row["lesions_resolved"] = f.count("resolved")
            row["lesions_new"] = f.count("new")
            row["lesions_before"] = f.before.count
        if h_est is not None:
            # The same lesion matching on the true label maps: what registration alone does to fates.
            aligned = warp_to_before(pair.after_labels, h_est, pair.before_labels.shape, nearest=True)
            common = coverage_mask(h_est, pair.after_labels.shape, pair.before_labels.shape)
            min_area = default_min_lesion_area_px(pair.before_labels.shape)
            tf = lesion_fates(pair.before_labels, aligned, common=common, min_area_px=min_area)
            row["truth_lesions_before"] = tf.before.count
            row["truth_lesions_resolved"] = tf.count("resolved")
            row["truth_lesions_new"] = tf.count("new")
        rows.append(row)
        print(
            f"seed {seed}: registration {row['registration']}, corner error {_fmt(row['corner_error_px'], '.2f')} px, "
            f"lesion change {_fmt(row['pipeline.lesion_area_change_rel'], '+.3f')}, "
            f"hair change {_fmt(row['pipeline.hair_coverage_change'], '+.4f')} "
            f"(same area {_fmt(row['pipeline.hair_coverage_change_common'], '+.4f')})",
            flush=True,
        )
    elapsed = time.perf_counter() - t0
    summary: dict[str, Any] = {}
    for way in WAYS:
        summary[way] = {}
        for key in FIELDS:
            vals = [r.get(f"{way}.{key}") for r in rows]
            goal = LESION_GOAL if key.startswith("lesion") else HAIR_GOAL
            summary[way][key] = {**_stats(vals), "within_goal": sum(x is not None and abs(x) <= goal for x in vals)}
    print()
    print(f"{args.n} phantom pairs, --change none, {w}x{h}, seeds {args.seed}..{args.seed + args.n - 1}, {elapsed:.0f} s")
    print("absolute values; goal: lesion change <= 2 %, hair change <= 0.01")
    print(f"{'field':<28} {'way':<12} {'median':>8} {'p90':>8} {'max':>8} {'in goal':>8}")
    for key in FIELDS:
        scale, unit, d = (100.0, "%", 3) if key.startswith("lesion") else (1.0, " ", 4)
        for way in WAYS:
            st = summary[way][key]
            if st.get("n", 0) == 0:
                print(f"{key:<28} {way:<12} {'(none)':>8}")
                continue
            print(
                f"{key:<28} {way:<12} {scale * st['median']:>7.{d}f}{unit} {scale * st['p90']:>7.{d}f}{unit} "
                f"{scale * st['max']:>7.{d}f}{unit} {st['within_goal']:>4}/{st['n']:<3}"
            )
    for label, prefix in (("pipeline", "lesions"), ("truth+estH", "truth_lesions")):
        fates = [r for r in rows if r.get(f"{prefix}_resolved") is not None]
        if fates:
            print(
                f"lesion objects ({label}): {sum(r[f'{prefix}_before'] for r in fates)} at month 0 over {len(fates)} "
                f"pairs; {sum(r[f'{prefix}_resolved'] for r in fates)} called resolved and "
                f"{sum(r[f'{prefix}_new'] for r in fates)} new (all are errors on unchanged pairs)"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "repeatability",
        "n": args.n,
        "size": [w, h],
        "first_seed": args.seed,
        "method": opts.method,
        "model": model_rec,
        "augment": opts.augment,
        "reconcile": opts.reconcile,
        "local_light": opts.local_light,
        "goals": {"lesion_area_change_rel": LESION_GOAL, "hair_coverage_change": HAIR_GOAL, "hair_coverage_change_common": HAIR_GOAL},
        "summary": summary,
        "pairs": rows,
        "elapsed_s": elapsed,
        "note": "timings on a shared 2-core machine are preliminary",
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
