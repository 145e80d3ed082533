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
* ``pipeline``: what ``imgtool analyze`` reports.

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
from imgtool.quantify import change_metrics, photo_metrics
from imgtool.registration import corner_error, coverage_mask, warp_to_before

LESION_GOAL = 0.02  # |lesion_area_change_rel|
HAIR_GOAL = 0.01  # |hair_coverage_change|, fraction points
WAYS = ("truth+trueH", "truth+estH", "seg+trueH", "pipeline")


def _change(labels_b: np.ndarray, labels_a: np.ndarray, h: np.ndarray) -> dict[str, Any]:
    """Change metrics of a labelled pair aligned with homography ``h``."""
    aligned = warp_to_before(labels_a, h, labels_b.shape, nearest=True)
    common = coverage_mask(h, labels_a.shape, labels_b.shape)
    m_b, m_a = photo_metrics(labels_b), photo_metrics(labels_a)
    return change_metrics(m_b, m_a, labels_b, aligned, common=common).to_dict()


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
    ap.add_argument("--out", default="benchmarks/results/bench_repeatability.json", help="JSON output path")
    args = ap.parse_args(argv)
    try:
        from imgtool.synth import render_pair
    except ImportError:
        print("imgtool.synth is not available (the phantom generator has not landed); nothing to measure", file=sys.stderr)
        return 1
    w, h = (int(x) for x in args.size.lower().split("x"))
    opts = AnalysisOptions() if args.method is None else AnalysisOptions(method=args.method)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for seed in range(args.seed, args.seed + args.n):
        pair = render_pair(seed, size=(w, h), change="none")
        res = analyze_pair(pair.before, pair.after, options=opts)
        h_true = np.asarray(pair.homography, dtype=np.float64)
        truth = pair.truth["metrics"]["change"]
        row: dict[str, Any] = {
            "seed": seed,
            "registration": res.registration.status,
            "corner_error_px": None if res.registration.homography is None else corner_error(res.registration.homography, h_true, pair.after.shape[:2]),
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
        for way, ch in ways.items():
            row[f"{way}.lesion_area_change_rel"] = ch["lesion_area_change_rel"]
            row[f"{way}.hair_coverage_change"] = ch["hair_coverage_change"]
        if res.lesions is not None and res.lesions.fates is not None:
            f = res.lesions.fates
            row["lesions_resolved"] = f.count("resolved")
            row["lesions_new"] = f.count("new")
            row["lesions_before"] = f.before.count
        rows.append(row)
        print(
            f"seed {seed}: reg {row['registration']}, corner err {row['corner_error_px'] or float('nan'):.2f} px, "
            f"lesion change {row['pipeline.lesion_area_change_rel'] or float('nan'):+.3f}, "
            f"hair change {row['pipeline.hair_coverage_change'] or float('nan'):+.4f}",
            flush=True,
        )
    elapsed = time.perf_counter() - t0
    summary: dict[str, Any] = {}
    for way in WAYS:
        les = [r.get(f"{way}.lesion_area_change_rel") for r in rows]
        hair = [r.get(f"{way}.hair_coverage_change") for r in rows]
        summary[way] = {
            "lesion_area_change_rel": _stats(les),
            "hair_coverage_change": _stats(hair),
            "lesion_within_goal": sum(x is not None and abs(x) <= LESION_GOAL for x in les),
            "hair_within_goal": sum(x is not None and abs(x) <= HAIR_GOAL for x in hair),
        }
    print()
    print(f"{args.n} phantom pairs, --change none, {w}x{h}, seeds {args.seed}..{args.seed + args.n - 1}, {elapsed:.0f} s")
    print(f"{'way':<13} {'|lesion change| median':>23} {'p90':>7} {'max':>7} {'<=2 %':>6}   {'|hair change| median':>21} {'p90':>7} {'max':>7} {'<=0.01':>6}")
    for way in WAYS:
        s = summary[way]
        lc, hc = s["lesion_area_change_rel"], s["hair_coverage_change"]
        if lc.get("n", 0) == 0:
            print(f"{way:<13} (no values)")
            continue
        print(
            f"{way:<13} {100 * lc['median']:>21.2f} % {100 * lc['p90']:>5.2f} % {100 * lc['max']:>5.2f} % {s['lesion_within_goal']:>3}/{lc['n']:<2}"
            f"   {hc.get('median', float('nan')):>21.4f} {hc.get('p90', float('nan')):>7.4f} {hc.get('max', float('nan')):>7.4f} {s['hair_within_goal']:>3}/{hc.get('n', 0):<2}"
        )
    fates = [r for r in rows if r["lesions_resolved"] is not None]
    if fates:
        print(
            f"lesion objects: {sum(r['lesions_before'] for r in fates)} at month 0 over {len(fates)} pairs; "
            f"{sum(r['lesions_resolved'] for r in fates)} called resolved and {sum(r['lesions_new'] for r in fates)} new "
            "(all are errors on unchanged pairs)"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "repeatability",
        "n": args.n,
        "size": [w, h],
        "first_seed": args.seed,
        "method": opts.method,
        "goals": {"lesion_area_change_rel": LESION_GOAL, "hair_coverage_change": HAIR_GOAL},
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
