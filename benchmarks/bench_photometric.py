"""Should AFTER be segmented before or after its colour correction? Measured on phantoms.

For each phantom pair (camera, lighting, white-balance and disease change; seeds not
used in tuning), the pipeline's steps are run by hand: both photos segmented, AFTER
registered onto BEFORE with those labels, and the AFTER -> BEFORE colour correction
fitted. AFTER is then segmented twice, as photographed and after the correction, and
each result is scored against the true labels: Dice of lesion and hair in AFTER's frame,
and the absolute error of the change metrics (counted as ``analyze`` counts them, with
the true homography, so that only the segmentation differs) against the truth.

    python benchmarks/bench_photometric.py --pairs 30 --method classical \\
        --out benchmarks/results/photometric.json

Needs ``imgtool.synth`` (the phantom generator); exits with a message without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from imgtool.io import to_json
from imgtool.labels import HAIR, LESION
from imgtool.quantify import change_metrics, photo_metrics
from imgtool.registration import apply_photometric, coverage_mask, register, warp_to_before
from imgtool.segmentation import METHODS, segment_labels

CHANGE_FIELDS = ("lesion_area_change_rel", "new_lesion_px", "resolved_lesion_px", "persistent_lesion_px", "regrown_hair_px", "lost_hair_px")


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    s = int(a.sum() + b.sum())
    return None if s == 0 else 2.0 * float((a & b).sum()) / s


def _change(labels_b: np.ndarray, labels_a: np.ndarray, h: np.ndarray) -> dict[str, Any]:
    shape = labels_b.shape
    aligned = warp_to_before(labels_a, h, shape, nearest=True)
    common = coverage_mask(h, labels_a.shape, shape)
    return change_metrics(photo_metrics(labels_b), photo_metrics(labels_a), labels_b, aligned, common=common).to_dict()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=910000, help="first phantom seed (unseen while tuning)")
    ap.add_argument("--size", default="1024x768", help="phantom size WxH")
    ap.add_argument("--method", default="classical", choices=METHODS, help="segmentation method")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/photometric.json")
    args = ap.parse_args(argv)
    try:
        from imgtool.synth import render_pair
    except ImportError:
        print("skipped: imgtool.synth (the phantom generator) is not installed in this checkout")
        return 0
    cv2.setNumThreads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    rows = []
    for s in range(args.seed, args.seed + args.pairs):
        p = render_pair(s, size=(w, h))
        if p.displacement is not None:
            continue  # bent bodies: the homography is not the whole truth, leave them out here
        lab_b, lab_a = segment_labels([p.before, p.after], method=args.method)
        reg = register(p.before, p.after, before_labels=lab_b, after_labels=lab_a)
        if not reg.aligned or reg.photometric is None:
            continue
        corrected = apply_photometric(p.after, reg, frame="after")
        (lab_a_corr,) = segment_labels([corrected], method=args.method)
        truth = p.truth["metrics"]["change"]
        row: dict[str, Any] = {"seed": s, "view": p.truth["scene"]["view"], "status": reg.status}
        for name, lab in (("raw", lab_a), ("corrected", lab_a_corr)):
            row[f"{name}_lesion_dice"] = _dice(lab == LESION, p.after_labels == LESION)
            row[f"{name}_hair_dice"] = _dice(lab == HAIR, p.after_labels == HAIR)
            est = _change(lab_b, lab, p.homography)
            for f in CHANGE_FIELDS:
                if est[f] is not None and truth[f] is not None:
                    row[f"{name}_{f}_abs_error"] = abs(float(est[f]) - float(truth[f]))
        rows.append(row)
        print(f"  {s}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    summary: dict[str, Any] = {}
    keys = sorted({k[len("raw_") :] for r in rows for k in r if k.startswith("raw_")})
    print(f"\n{'measure (mean over pairs)':<44}{'raw':>12}{'corrected':>12}{'pairs':>7}")
    for k in keys:
        both = [(r[f"raw_{k}"], r[f"corrected_{k}"]) for r in rows if r.get(f"raw_{k}") is not None and r.get(f"corrected_{k}") is not None]
        if not both:
            continue
        raw, cor = np.mean([b[0] for b in both]), np.mean([b[1] for b in both])
        summary[k] = {"raw": float(raw), "corrected": float(cor), "pairs": len(both)}
        print(f"{k:<44}{raw:>12.4f}{cor:>12.4f}{len(both):>7}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(["python", "benchmarks/bench_photometric.py", *(argv if argv is not None else sys.argv[1:])])
    out.write_text(to_json({"benchmark": "bench_photometric", "method": args.method, "command": cmd, "summary": summary, "pairs": rows}))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
