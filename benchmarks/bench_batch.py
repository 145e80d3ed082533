"""Throughput and memory of ``imgtool batch``, next to a shell loop of ``imgtool analyze``.

Three measurements, each in its own process(es), all from phantom pairs drawn here
(no data needed):

1. **throughput** (CPU): the same manifest of ``--pairs`` phantom pairs of ``--size``
   (default 40 pairs of 1632x1224, 2 megapixels; ``--pairs 200`` for the issue's
   full run) through (a) a shell loop of ``imgtool analyze``, one process per pair,
   the peer; (b) ``imgtool batch``; (c) ``imgtool batch --dask-local N``. Pairs/s
   of each and their ratios to the shell loop, and the device busy fraction of (b).
   ``--distinct`` pairs are drawn and the manifest reuses them (every row is still
   analysed and written in full).
2. **memory**: ``imgtool batch`` over ``--memory-pairs`` small pairs (default 200 of
   256x192; ``--memory-pairs 1000`` for the issue's run); the resident memory of the
   whole process tree (the batch process and its workers) sampled every 0.5 s;
   flat means the median of the last quarter of the run is close to that of the
   first quarter (both after the workers have started).
3. **CUDA** (``--cuda-only``, or added to a run where CUDA exists): ``--cuda-pairs``
   (default 32) 12-megapixel JPEG pairs (4000x3000, quality 92; ``--cuda-distinct`` drawn) through ``run_batch`` on the GPU:
   pairs/s and the device's busy fraction (time in segmentation calls / wall time),
   and the same pairs' first ``--cuda-peer-pairs`` one at a time in one process
   (``workers=0``) as the peer.

Run from the repository root::

    python benchmarks/bench_batch.py                          # CPU: throughput + memory
    python benchmarks/bench_batch.py --pairs 200 --memory-pairs 1000
    python benchmarks/bench_batch.py --cuda-only              # on a GPU machine

Prints a table and writes JSON to ``--out`` (default ``benchmarks/results/batch.json``,
``batch_cuda.json`` with ``--cuda-only``).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _draw(args: tuple[int, tuple[int, int], str, str]) -> tuple[str, str]:
    """Draw phantom pair ``seed`` and write it as two files; return their paths."""
    seed, size, folder, ext = args
    import cv2

    from imgtool.io import write_png
    from imgtool.synth import render_pair

    pp = render_pair(seed, size=size)
    paths = []
    for name, img in (("m00", pp.before), ("m10", pp.after)):
        path = str(Path(folder) / f"phantom{seed:03d}_{name}.{ext}")
        if ext == "jpg":
            cv2.imwrite(path, img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        else:
            write_png(path, img)
        paths.append(path)
    return paths[0], paths[1]


def make_manifest(folder: Path, n_pairs: int, distinct: int, size: tuple[int, int], ext: str = "png", jobs: int = 1) -> Path:
    """Draw ``distinct`` phantom pairs into ``folder`` and a manifest of ``n_pairs`` rows cycling through them."""
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [(seed, size, str(folder), ext) for seed in range(min(distinct, n_pairs))]
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            files = list(pool.map(_draw, tasks))
    else:
        files = [_draw(t) for t in tasks]
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pair_id", "before", "after", "site"])
        for i in range(n_pairs):
            b, a = files[i % len(files)]
            w.writerow([f"pair{i:04d}", Path(b).name, Path(a).name, f"site{i % 3}"])
    return manifest


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _timed(cmd: list[str] | str, shell: bool = False) -> tuple[float, int, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, shell=shell, env=_env(), capture_output=True, text=True, executable="/bin/bash" if shell else None)
    return time.perf_counter() - t, p.returncode, (p.stdout + p.stderr)[-2000:]


def _count(out: Path) -> dict[str, int]:
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "pending")}


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Shell loop of ``imgtool analyze`` vs ``imgtool batch`` vs ``imgtool batch --dask-local``."""
    t = time.perf_counter()
    manifest = make_manifest(work / "pairs", args.pairs, args.distinct, args.size, jobs=1)
    draw_s = time.perf_counter() - t
    py = shlex.quote(sys.executable)
    rows = list(csv.DictReader(open(manifest, newline="")))
    loop = " ; ".join(
        f"{py} -m imgtool analyze {shlex.quote(str(manifest.parent / r['before']))} {shlex.quote(str(manifest.parent / r['after']))} "
        f"-o {shlex.quote(str(work / 'loop' / r['pair_id']))} --device cpu"
        for r in rows
    )
    base = [sys.executable, "-m", "imgtool", "batch", str(manifest), "--quiet", "--device", "cpu"]
    runs: dict[str, Any] = {}
    for name, cmd, shell in (
        ("shell loop of analyze", loop, True),
        ("batch", [*base, "-o", str(work / "batch"), "--workers", str(args.workers)], False),
        (f"batch --dask-local {args.dask_workers}", [*base, "-o", str(work / "dask"), "--dask-local", str(args.dask_workers)], False),
    ):
        wall, rc, tail = _timed(cmd, shell=shell)
        runs[name] = {"wall_s": wall, "pairs_per_s": args.pairs / wall, "returncode": rc}
        if name != "shell loop of analyze":
            runs[name]["status"] = _count(work / ("batch" if name == "batch" else "dask"))
        if rc not in (0, 1):
            runs[name]["log_tail"] = tail
        print(f"  {name}: {wall:.1f} s", file=sys.stderr)
    peer = runs["shell loop of analyze"]["pairs_per_s"]
    for r in runs.values():
        r["ratio_to_shell_loop"] = r["pairs_per_s"] / peer
    # The device busy fraction of the local pipeline, from the API on the same manifest.
    busy = _busy_fraction(manifest, work / "busy", device="cpu", workers=args.workers, limit=min(args.pairs, 16))
    return {"pairs": args.pairs, "distinct_pairs": min(args.distinct, args.pairs), "size": list(args.size), "draw_s": draw_s, "runs": runs, "busy": busy}


def _busy_fraction(manifest: Path, out: Path, *, device: str, workers: int, limit: int | None = None) -> dict[str, Any]:
    from imgtool.batch import BatchOptions, run_batch

    if limit is not None:
        rows = list(csv.DictReader(open(manifest, newline="")))[:limit]
        manifest = manifest.with_name(f"manifest_{limit}.csv")
        with open(manifest, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    s = run_batch(manifest, out, options=BatchOptions(device=device, workers=workers, progress=False))
    d = s.to_dict()
    return {"pairs": len(s.outcomes), "wall_s": s.wall_s, "pairs_per_s": d["pairs_per_s"], "device": d["device"], "done": d["done"], "failed": d["failed"]}


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """RSS of a batch's process tree over ``--memory-pairs`` small pairs."""
    manifest = make_manifest(work / "small", args.memory_pairs, args.distinct, (256, 192))
    cmd = [sys.executable, "-m", "imgtool", "batch", str(manifest), "-o", str(work / "mem"), "--quiet", "--device", "cpu", "--workers", str(args.workers)]
    samples: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, _tree_rss(proc.pid)))
            stop.wait(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    rss = [r for _, r in samples if r > 0]
    q = max(1, len(rss) // 4)
    # Skip the first 10 % (start-up: imports, model load, workers spawning).
    steady = rss[len(rss) // 10 :] or rss
    q = max(1, len(steady) // 4)
    first, last = statistics.median(steady[:q]), statistics.median(steady[-q:])
    return {
        "pairs": args.memory_pairs,
        "size": [256, 192],
        "wall_s": wall,
        "returncode": rc,
        "status": _count(work / "mem"),
        "peak_rss_mb": max(rss) / 2**20,
        "first_quarter_median_mb": first / 2**20,
        "last_quarter_median_mb": last / 2**20,
        "growth_ratio": last / first,
        "samples": [(round(t, 1), round(r / 2**20, 1)) for t, r in samples[:: max(1, len(samples) // 60)]],
    }


def cuda(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``--cuda-pairs`` 12-megapixel JPEG pairs through run_batch on the GPU, and a one-process peer."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    jobs = max(1, (os.cpu_count() or 1) - 1)
    t = time.perf_counter()
    manifest = make_manifest(work / "jpeg12", args.cuda_pairs, args.cuda_distinct, args.cuda_size, ext="jpg", jobs=min(jobs, args.cuda_distinct))
    draw_s = time.perf_counter() - t
    workers = args.cuda_workers if args.cuda_workers is not None else jobs
    main = _busy_fraction(manifest, work / "cuda_batch", device="cuda", workers=workers)
    peer = _busy_fraction(manifest, work / "cuda_serial", device="cuda", workers=0, limit=args.cuda_peer_pairs)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "pairs": args.cuda_pairs,
        "distinct_pairs": min(args.cuda_distinct, args.cuda_pairs),
        "size": list(args.cuda_size),
        "draw_s": draw_s,
        "workers": workers,
        "batch": main,
        "one_process_peer": peer,
        "ratio_to_peer": main["pairs_per_s"] / peer["pairs_per_s"] if peer["pairs_per_s"] else None,
    }


def _size(text: str) -> tuple[int, int]:
    w, h = (int(x) for x in text.lower().split("x"))
    return w, h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=40, help="pairs for the throughput comparison (default 40; the issue's run: 200)")
    p.add_argument("--size", type=_size, default=(1632, 1224), help="phantom size WxH (default 1632x1224, 2 MP)")
    p.add_argument("--distinct", type=int, default=8, help="distinct phantom pairs drawn; the manifest cycles through them (default 8)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="batch --workers (default: one per core)")
    p.add_argument("--dask-workers", type=int, default=2, help="batch --dask-local N (default 2)")
    p.add_argument("--memory-pairs", type=int, default=200, help="pairs of the memory run (default 200; the issue's run: 1000; 0 skips it)")
    p.add_argument("--skip-throughput", action="store_true", help="only the memory (and CUDA) runs")
    p.add_argument("--cuda-only", action="store_true", help="only the CUDA measurement (12-MP JPEG pairs)")
    p.add_argument("--cuda-pairs", type=int, default=32, help="12-MP pairs of the CUDA run (default 32)")
    p.add_argument("--cuda-size", type=_size, default=(4000, 3000), help="photo size of the CUDA run (default 4000x3000, 12 MP)")
    p.add_argument("--cuda-distinct", type=int, default=4, help="distinct 12-MP phantom pairs drawn (default 4)")
    p.add_argument("--cuda-workers", type=int, default=None, help="batch workers on the GPU machine (default: cores - 1)")
    p.add_argument("--cuda-peer-pairs", type=int, default=4, help="pairs of the one-process CUDA peer (default 4)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/batch.json or batch_cuda.json)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    out = Path(args.out or REPO / "benchmarks" / "results" / ("batch_cuda.json" if args.cuda_only else "batch.json"))
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__},
        "note": "preliminary: measured on a shared machine; rerun on a quiet one for claims",
    }
    with tempfile.TemporaryDirectory(prefix="bench_batch.") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        if args.cuda_only:
            report["cuda"] = cuda(args, work)
        else:
            if not args.skip_throughput:
                report["throughput"] = throughput(args, work)
            if args.memory_pairs > 0:
                report["memory"] = memory(args, work)
            if torch.cuda.is_available():
                report["cuda"] = cuda(args, work)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"wrote {out}")
    return 0


def format_table(report: dict[str, Any]) -> str:
    lines = []
    tp = report.get("throughput")
    if tp:
        lines.append(f"throughput: {tp['pairs']} pairs of {tp['size'][0]}x{tp['size'][1]} on {report['machine']['cpus']} CPU cores")
        lines.append(f"{'run':<28}{'wall s':>9}{'pairs/s':>10}{'x loop':>8}")
        for name, r in tp["runs"].items():
            lines.append(f"{name:<28}{r['wall_s']:>9.1f}{r['pairs_per_s']:>10.3f}{r['ratio_to_shell_loop']:>8.2f}")
        b = tp["busy"]
        lines.append(f"device (CPU) busy fraction of batch over {b['pairs']} pairs: {b['device']['busy_fraction']:.2f}")
    mem = report.get("memory")
    if mem:
        lines.append(
            f"memory: {mem['pairs']} pairs of 256x192 in {mem['wall_s']:.0f} s; process-tree RSS peak {mem['peak_rss_mb']:.0f} MB, "
            f"median first quarter {mem['first_quarter_median_mb']:.0f} MB, last quarter {mem['last_quarter_median_mb']:.0f} MB (x{mem['growth_ratio']:.2f})"
        )
    cu = report.get("cuda")
    if cu and "skipped" not in cu:
        b, pe = cu["batch"], cu["one_process_peer"]
        lines.append(f"cuda ({cu['gpu']}): {cu['pairs']} pairs of {cu['size'][0]}x{cu['size'][1]} JPEG, {cu['workers']} workers")
        lines.append(f"  batch: {b['pairs_per_s']:.2f} pairs/s ({b['done']} done, {b['failed']} failed), device busy fraction {b['device']['busy_fraction']:.2f}")
        lines.append(f"  one process (workers=0), {pe['pairs']} pairs: {pe['pairs_per_s']:.2f} pairs/s; ratio {cu['ratio_to_peer']:.2f}")
    elif cu:
        lines.append(f"cuda: {cu['skipped']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
