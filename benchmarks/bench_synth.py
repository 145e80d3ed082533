"""Phantom generator speed: photos/s at 512x512 and pairs/s at 1024x1024.

The peer in the same run is reading the same pairs back from PNG files (what training
from a pre-rendered folder would cost instead), so the table says whether drawing
phantoms on the fly keeps up with loading them.

    python benchmarks/bench_synth.py                      # 2 threads, default counts
    python benchmarks/bench_synth.py --photos 40 --pairs 10 --threads 2 --out benchmarks/results/bench_synth.json

Wall time depends on what else runs on the machine: the load average is recorded
next to the numbers, and CPU time is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from imgtool.synth import render_pair, render_photo
from imgtool.synth.store import read_pair, write_pair


def _timed(fn, n: int) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=40, help="photos drawn at 512x512")
    ap.add_argument("--pairs", type=int, default=10, help="pairs drawn at 1024x1024")
    ap.add_argument("--threads", type=int, default=2, help="OpenCV threads (the target machine has 2 cores)")
    ap.add_argument("--seed", type=int, default=1000, help="first seed")
    ap.add_argument("--out", default="benchmarks/results/bench_synth.json", help="JSON results file")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)

    render_photo(args.seed, size=(256, 256))  # warm-up (imports, allocator)
    load0 = os.getloadavg()
    rows = []
    w, c = _timed(lambda i: render_photo(args.seed + i, size=(512, 512)), args.photos)
    rows.append({"task": "render_photo 512x512", "n": args.photos, "wall_s": w, "cpu_s": c, "per_s": args.photos / w})
    w, c = _timed(lambda i: render_pair(args.seed + i, size=(1024, 1024)), args.pairs)
    rows.append({"task": "render_pair 1024x1024", "n": args.pairs, "wall_s": w, "cpu_s": c, "per_s": args.pairs / w})
    with tempfile.TemporaryDirectory() as tmp:
        folders = [write_pair(render_pair(args.seed + i, size=(1024, 1024)), Path(tmp) / str(i)) for i in range(args.pairs)]
        w, c = _timed(lambda i: read_pair(folders[i]), args.pairs)
        rows.append({"task": "peer: read_pair 1024x1024 from PNG", "n": args.pairs, "wall_s": w, "cpu_s": c, "per_s": args.pairs / w})
    load1 = os.getloadavg()

    print(f"{'task':<38}{'n':>5}{'wall s':>9}{'cpu s':>9}{'per s':>9}{'ms each':>9}")
    for r in rows:
        print(f"{r['task']:<38}{r['n']:>5}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}{r['per_s']:>9.2f}{1000 * r['wall_s'] / r['n']:>9.0f}")
    print(f"load average before/after: {load0[0]:.2f} / {load1[0]:.2f} (cores: {os.cpu_count()}, OpenCV threads: {args.threads})")
    result = {
        "benchmark": "bench_synth",
        "rows": rows,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_before": load0,
        "load_average_after": load1,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
