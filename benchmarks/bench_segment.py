"""Speed and memory of CNN segmentation, next to the machine's own convolution throughput.

For photos of 1, 12 and 24 megapixels (4:3), each measured in a fresh process so
that peak memory is its own: the median wall time of ``segment_labels`` with the
model loaded beforehand, megapixels per second, and the peak memory (resident set
on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU) while segmenting, next to
the process's level after loading the model and making the photo, and next to what
a full-resolution float32 stack of the four class scores alone would take. In the same run, the peer: the
throughput of a plain 3x3 convolution (48 -> 48 channels, 512x512, channels-last)
on the same device, and the share of it the network achieves (network FLOP of the
photo's tiles over the network's own time). On a GPU it also times a batch of
12-megapixel photos (batched throughput).

Run from the repository root::

    python benchmarks/bench_segment.py                      # device auto
    python benchmarks/bench_segment.py --device cpu --threads 2
    python benchmarks/bench_segment.py --device cuda --batch-images 16

Prints a table and writes JSON to ``--out`` (default
``benchmarks/results/segment_<device>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _photo(mp: float, seed: int = 0) -> np.ndarray:
    """A smooth random 4:3 photo of ``mp`` megapixels (uint8 RGB)."""
    import cv2

    w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, h // 64), max(2, w // 64), 3)).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    img += rng.integers(0, 8, size=(h, 1, 1), dtype=np.uint8)  # a little row texture
    return img


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_mb() -> float:
    """Current resident set size in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux: ``clear_refs`` 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_mb() -> float:
    """Peak resident set size since the last reset, in MB (Linux ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def conv_throughput(device: Any, repeats: int = 5) -> float:
    """GFLOP/s of a 3x3 convolution 48 -> 48 on a 512x512 input (batch 4), float32 (autocast on GPU)."""
    import torch

    from imgtool.segmentation.inference import _autocast

    conv = torch.nn.Conv2d(48, 48, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last).eval()
    x = torch.randn(4, 48, 512, 512, device=device).contiguous(memory_format=torch.channels_last)
    flop = 2 * 48 * 9 * 48 * 512 * 512 * 4
    times = []
    with torch.inference_mode(), _autocast(device):
        conv(x)
        _sync(device)
        for _ in range(repeats):
            t = time.perf_counter()
            conv(x)
            _sync(device)
            times.append(time.perf_counter() - t)
    return flop / statistics.median(times) / 1e9


def _model_record(name: str | None) -> dict[str, Any] | str:
    """Name and sha256 of the weights the workers time ("random" for the untrained network)."""
    if name == "random":
        return "random"
    from imgtool.segmentation.model import load_model

    m = load_model(name, device="cpu")  # the hash is checked on loading: the record is of the file timed
    return {"name": m.name, "sha256": m.sha256}


def _load(args: argparse.Namespace) -> Any:
    import torch

    from imgtool.segmentation.model import InputSpec, load_model, save_model
    from imgtool.segmentation.network import NetworkConfig, SmallUNet

    if args.model == "random":
        # Speed does not depend on the weights: a randomly initialised network of the
        # default architecture, for machines without the shipped weights.
        torch.manual_seed(0)
        path = Path(args.tmp) / "random_unet"
        save_model(SmallUNet(NetworkConfig(widths=(12, 24, 48, 96, 160, 256))).eval(), path, input_spec=InputSpec())
        return load_model(path.with_suffix(".safetensors"), device=args.device)
    return load_model(args.model, device=args.device)


def measure_one(args: argparse.Namespace) -> dict[str, Any]:
    """Time one photo size in this process (called in a fresh subprocess)."""
    import torch

    from imgtool.segmentation import segment_labels
    from imgtool.segmentation.inference import predict_logits, working_size
    from imgtool.segmentation.network import count_flops
    from imgtool.segmentation.tiling import make_tiles

    if args.threads:
        torch.set_num_threads(args.threads)
    model = _load(args)
    dev = model.device
    img = _photo(args.one)
    mp = img.shape[0] * img.shape[1] / 1e6
    segment_labels([img], model=model, batch_size=args.batch_size)  # warm-up (kernel selection)
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base_gpu = torch.cuda.memory_allocated(dev)
    base_rss = _rss_mb()
    _reset_peak_rss()
    times, net_times = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        segment_labels([img], model=model, batch_size=args.batch_size)
        _sync(dev)
        times.append(time.perf_counter() - t)
    peak_rss = _peak_rss_mb()
    for _ in range(args.repeats):
        t = time.perf_counter()
        list(predict_logits([img], model, batch_size=args.batch_size))
        _sync(dev)
        net_times.append(time.perf_counter() - t)
    spec = model.input_spec
    wh = working_size(img.shape[:2], spec.working_long_side)
    tiles = make_tiles(wh, spec.tile_size, spec.overlap)
    net_flop = sum(count_flops(model.network, *t.shape) for t in tiles)
    rec: dict[str, Any] = {
        "megapixels": round(mp, 2),
        "shape": list(img.shape[:2]),
        "working_shape": list(wh),
        "tiles": len(tiles),
        "seconds": round(statistics.median(times), 4),
        "seconds_min": round(min(times), 4),
        "megapixels_per_s": round(mp / statistics.median(times), 2),
        "network_seconds": round(statistics.median(net_times), 4),
        "network_gflop": round(net_flop / 1e9, 3),
        "network_gflop_per_s": round(net_flop / statistics.median(net_times) / 1e9, 2),
        "peak_rss_mb": round(peak_rss, 1),
        "rss_before_mb": round(base_rss, 1),
        "input_photo_mb": round(img.nbytes / 1e6, 1),
        "full_res_float_stack_mb": round(img.shape[0] * img.shape[1] * 4 * 4 / 1e6, 1),
    }
    if dev.type == "cuda":
        rec["gpu_peak_above_model_mb"] = round((torch.cuda.max_memory_allocated(dev) - base_gpu) / 1e6, 1)
    return rec


def measure_batch(args: argparse.Namespace) -> dict[str, Any]:
    """Batched throughput: ``--batch-images`` 12-megapixel photos in one call (GPU)."""
    import torch

    from imgtool.segmentation import segment_labels

    model = _load(args)
    dev = model.device
    imgs = [_photo(12.0, seed=i) for i in range(args.batch_images)]
    mp = sum(i.shape[0] * i.shape[1] for i in imgs) / 1e6
    segment_labels(imgs[:2], model=model, batch_size=args.batch_size)
    _sync(dev)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        segment_labels(imgs, model=model, batch_size=args.batch_size)
        _sync(dev)
        times.append(time.perf_counter() - t)
    return {
        "photos": len(imgs),
        "megapixels": round(mp, 1),
        "seconds": round(statistics.median(times), 4),
        "megapixels_per_s": round(mp / statistics.median(times), 1),
    }


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--sizes", type=float, nargs="+", default=[1.0, 12.0, 24.0], help="photo sizes in megapixels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per forward pass")
    p.add_argument("--batch-images", type=int, default=16, help="12-MP photos in the batched GPU run")
    p.add_argument("--model", default=None, help="model name or path (default: the shipped model); 'random' for random weights")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/segment_<device>.json)")
    p.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))

    if args.one is not None or args.batch:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            args.tmp = tmp
            print(json.dumps(measure_batch(args) if args.batch else measure_one(args)))
        return 0

    import torch

    from imgtool.segmentation.model import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    common = ["--device", dev.type, "--repeats", str(args.repeats), "--threads", str(args.threads)]
    if args.model:
        common += ["--model", args.model]
    if args.batch_size:
        common += ["--batch-size", str(args.batch_size)]

    def child(extra: list[str]) -> dict[str, Any]:
        run = subprocess.run([sys.executable, __file__, *common, *extra], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise SystemExit(f"benchmark worker failed:\n{run.stderr}")
        return json.loads(run.stdout.strip().splitlines()[-1])

    peak = conv_throughput(dev)
    rows = [child(["--one", str(mp)]) for mp in args.sizes]
    for r in rows:
        r["share_of_conv_peak"] = round(r["network_gflop_per_s"] / peak, 3)
    batch = child(["--batch", "--batch-images", str(args.batch_images)]) if dev.type == "cuda" else None

    result = {
        "device": dev.type,
        "device_name": _device_name(dev),
        "torch": torch.__version__,
        "torch_threads": args.threads or torch.get_num_threads(),
        "model": _model_record(args.model),
        "conv3x3_48ch_gflop_per_s": round(peak, 1),
        "photos": rows,
        "batched_12mp": batch,
    }
    print(f"device: {result['device_name']} ({dev.type}), torch {torch.__version__}, threads {result['torch_threads']}")
    print(f"peer: 3x3 conv 48->48 on 4x512x512: {peak:.1f} GFLOP/s")
    print(f"{'MP':>6} {'tiles':>5} {'s':>8} {'MP/s':>8} {'net s':>7} {'net GFLOP/s':>11} {'share':>6} {'peak RSS MB':>11} {'RSS before':>10} {'f32 stack':>9}")
    for r in rows:
        print(
            f"{r['megapixels']:>6.1f} {r['tiles']:>5d} {r['seconds']:>8.3f} {r['megapixels_per_s']:>8.2f} {r['network_seconds']:>7.3f} "
            f"{r['network_gflop_per_s']:>11.1f} {r['share_of_conv_peak']:>6.2f} {r['peak_rss_mb']:>11.0f} {r['rss_before_mb']:>10.0f} "
            f"{r['full_res_float_stack_mb']:>9.0f}"
        )
    if batch:
        print(f"batched: {batch['photos']} x 12 MP in {batch['seconds']:.3f} s = {batch['megapixels_per_s']:.1f} MP/s")
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"segment_{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
