"""Accuracy of the CNN next to the classical baseline on the same images.

* Phantoms of seeds never used in training (``--phantom-seed`` on, default 7000000):
  Dice per class (skin, lesion, hair), pooled over all phantoms.
* The held-out files (the ``test`` ids of the training config) of each real set in
  ``../shared/data``: lesion Dice on the lesion sets, hair IoU on the hair sets (and
  the other overlap numbers), pooled over the set's pixels and as a mean per photo;
  for PAD-UFES-20 also by Fitzpatrick skin type where its metadata gives one.

Run from the repository root::

    python benchmarks/eval_segment.py --model models/unet_s_v1.safetensors --update-card

Prints a table and writes JSON to ``--out`` (default
``benchmarks/results/eval_segment.json``); ``--update-card`` also writes the numbers
into the model card's ``metrics`` (the weights and their hash are not touched).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def overlap(pred: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """Pixel counts of a binary prediction against a binary truth."""
    return {
        "tp": int(np.count_nonzero(pred & truth)),
        "fp": int(np.count_nonzero(pred & ~truth)),
        "fn": int(np.count_nonzero(~pred & truth)),
    }


def scores(c: dict[str, int]) -> dict[str, float | None]:
    """Dice, IoU, sensitivity and precision from pixel counts (None where undefined)."""
    tp, fp, fn = c["tp"], c["fp"], c["fn"]

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 4) if b else None

    return {"dice": ratio(2 * tp, 2 * tp + fp + fn), "iou": ratio(tp, tp + fp + fn), "sensitivity": ratio(tp, tp + fn), "precision": ratio(tp, tp + fp)}


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b[k] for k in b}


def eval_real(cfg: Any, model: Any, methods: list[str]) -> dict[str, Any]:
    from imgtool.segmentation import segment_labels
    from imgtool.segmentation.data import list_masked_photos, read_masked_photo
    from imgtool.segmentation.train import CLASS_OF_SET

    out: dict[str, Any] = {}
    for s in cfg.real_sets:
        folder = Path(cfg.data_root) / s.name
        items = {m.id: m for m in list_masked_photos(folder)}
        fitz: dict[str, str] = {}
        if (folder / "labels.csv").is_file():
            with open(folder / "labels.csv", newline="") as f:
                fitz = {Path(r["img_id"]).stem: (r.get("fitspatrick") or "").split(".")[0] for r in csv.DictReader(f)}
        k = CLASS_OF_SET[s.cls]
        rec: dict[str, Any] = {"class": s.cls, "n_images": len(s.test), "ids": list(s.test)}
        for method in methods:
            pooled: dict[str, int] = {}
            per_image, by_type = [], {}
            for i in s.test:
                img, mask = read_masked_photo(items[i])
                lab = segment_labels([img], method=method, model=model if method == "cnn" else None)[0]
                c = overlap(lab == k, mask)
                pooled = _add(pooled, c)
                per_image.append(scores(c))
                t = fitz.get(i) or "unknown"
                by_type[t] = _add(by_type.get(t, {}), c)
            mean = {m: round(float(np.mean([r[m] for r in per_image if r[m] is not None])), 4) for m in ("dice", "iou")}
            rec[method] = {"pooled": scores(pooled), "mean_per_image": mean}
            if fitz:
                rec[method]["by_fitzpatrick"] = {
                    t: {"n": sum(1 for i in s.test if (fitz.get(i) or "unknown") == t), **scores(c)} for t, c in sorted(by_type.items())
                }
        out[s.name] = rec
    return out


def eval_phantoms(model: Any, methods: list[str], seed: int, n: int, size: tuple[int, int]) -> dict[str, Any]:
    from imgtool import synth
    from imgtool.labels import HAIR, LESION, SKIN
    from imgtool.segmentation import segment_labels

    pooled: dict[str, dict[str, dict[str, int]]] = {m: {} for m in methods}
    for j in range(n):
        img, truth = synth.render_photo(seed + j, size=size)
        for method in methods:
            lab = segment_labels([img], method=method, model=model if method == "cnn" else None)[0]
            for name, k in (("skin", SKIN), ("lesion", LESION), ("hair", HAIR)):
                pooled[method][name] = _add(pooled[method].get(name, {}), overlap(lab == k, truth == k))
    return {
        "seeds": [seed, seed + n - 1],
        "size": list(size),
        **{m: {name: scores(c) for name, c in pooled[m].items()} for m in methods},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model name or path (default: the shipped model)")
    p.add_argument("--config", default=None, help="training config with the split (default: models/<name>.train.json, else the card's)")
    p.add_argument("--phantoms", type=int, default=40, help="number of test phantoms (0 to skip)")
    p.add_argument("--phantom-seed", type=int, default=7_000_000)
    p.add_argument("--phantom-size", type=int, nargs=2, default=[1024, 768], metavar=("W", "H"))
    p.add_argument("--data-root", default=None, help="folder of the real sets (default: the config's)")
    p.add_argument("--update-card", action="store_true", help="write the metrics into the model card")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval_segment.json"))
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))

    from dataclasses import replace

    from imgtool.io import write_json
    from imgtool.segmentation.model import _model_paths, load_model
    from imgtool.segmentation.train import TrainConfig, load_train_config

    model = load_model(args.model, device="cpu")
    default_config = REPO / "models" / f"{model.name}.train.json"
    if args.config or default_config.is_file():
        cfg = load_train_config(args.config or default_config)
    else:
        cfg = TrainConfig.from_dict(model.card["training"]["config"])
        cfg = replace(cfg, data_root=str((REPO / "models" / cfg.data_root).resolve()))
    if args.data_root:
        cfg = replace(cfg, data_root=args.data_root)
    methods = ["cnn", "classical"]
    t0 = time.perf_counter()
    result: dict[str, Any] = {"model": model.info(), "real_sets": eval_real(cfg, model, methods)}
    if args.phantoms:
        result["phantoms"] = eval_phantoms(model, methods, args.phantom_seed, args.phantoms, tuple(args.phantom_size))
    result["seconds"] = round(time.perf_counter() - t0, 1)

    print(f"model {model.name} ({model.sha256[:12]}...)")
    print(f"{'set':<24} {'class':<7} {'n':>3} {'metric':<7} {'cnn':>7} {'classical':>9}")
    for name, rec in result["real_sets"].items():
        metric = "dice" if rec["class"] == "lesion" else "iou"
        print(f"{name:<24} {rec['class']:<7} {rec['n_images']:>3} {metric:<7} {rec['cnn']['pooled'][metric]:>7.3f} {rec['classical']['pooled'][metric]:>9.3f}")
    if "phantoms" in result:
        ph = result["phantoms"]
        for cls in ("skin", "lesion", "hair"):
            cnn, cl = ph["cnn"][cls]["dice"], ph["classical"][cls]["dice"]
            print(f"{'phantoms':<24} {cls:<7} {args.phantoms:>3} {'dice':<7} {cnn if cnn is not None else float('nan'):>7.3f} {cl if cl is not None else float('nan'):>9.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(f"wrote {out}")
    if args.update_card:
        _, card_path = _model_paths(args.model)
        card = json.loads(card_path.read_text())
        card["metrics"] = {k: v for k, v in result.items() if k in ("real_sets", "phantoms")}
        card["metrics"]["measured_with"] = "python benchmarks/eval_segment.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_json(card_path, card)
        print(f"updated {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
