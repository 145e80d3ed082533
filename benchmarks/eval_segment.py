"""Accuracy of the CNN next to the classical baseline on the same images.

Both through ``imgtool evaluate``'s API (:mod:`imgtool.evaluate`), on the shipped
default model (``models/``):

* phantom pairs drawn with a run seed (``--phantom-seed``, default 7000000) whose pair
  seeds are checked to lie outside the training seeds: Dice per class (skin, lesion,
  hair) of both photos of each pair, pooled;
* The held-out files (the ``test`` ids of the training config) of each real set in
  ``../shared/data``: lesion Dice on the lesion sets, hair IoU on the hair sets (and
  the other overlap numbers), pooled over the set's pixels and as a mean per photo;
  for PAD-UFES-20 also by Fitzpatrick skin type where its metadata gives one;
* ``sample_images/`` against their exact truth (``sample_images/truth``): pixel accuracy
  and Dice per class.

Run from the repository root::

    python benchmarks/eval_segment.py --update-card

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

REPO = Path(__file__).resolve().parents[1]


def _split(label: str) -> tuple[str, bool]:
    """``"cnn+augment"`` -> ``("cnn", True)``: a column of the table is a method, with or without test-time augmentation."""
    method, _, extra = label.partition("+")
    return method, extra == "augment"


def eval_real(cfg: Any, methods: list[str]) -> dict[str, Any]:
    """``imgtool evaluate`` (:func:`imgtool.evaluate.evaluate_masks`) on each set's held-out ids."""
    from imgtool.evaluate import evaluate_masks, scores_from_counts

    out: dict[str, Any] = {}
    for s in cfg.real_sets:
        folder = cfg.data_dir() / s.name
        fitz: dict[str, str] = {}
        if (folder / "labels.csv").is_file():
            with open(folder / "labels.csv", newline="") as f:
                fitz = {Path(r["img_id"]).stem: (r.get("fitspatrick") or "").split(".")[0] or "unknown" for r in csv.DictReader(f)}
        rec: dict[str, Any] = {"class": s.cls, "n_images": len(s.test), "ids": list(s.test)}
        for method in methods:
            ev = evaluate_masks(folder, mask_class=s.cls, method=_split(method)[0], ids=list(s.test), augment=_split(method)[1])
            summ = ev.summary
            rec[method] = {
                "pooled": {k: summ["pooled"][k] for k in ("dice", "iou", "sensitivity", "precision")},
                "mean_per_image": {"dice": summ["dice"]["mean"], "iou": summ["iou"]["mean"]},
            }
            if fitz:
                groups: dict[str, list[dict[str, Any]]] = {}
                for r in ev.rows:
                    groups.setdefault(fitz.get(r["id"], "unknown"), []).append(r)
                rec[method]["by_fitzpatrick"] = {
                    t: {"n": len(rows), **{k: v for k, v in scores_from_counts(*(sum(r[c] for r in rows) for c in ("tp", "fp", "fn"))).items() if k in ("dice", "iou")}}
                    for t, rows in sorted(groups.items())
                }
        out[s.name] = rec
    return out


def eval_phantoms(methods: list[str], seed: int, n: int, size: tuple[int, int], train_seeds: range) -> dict[str, Any]:
    """``imgtool evaluate --phantoms N --seed S`` (:func:`imgtool.evaluate.evaluate_phantoms`): per-class Dice."""
    from imgtool.evaluate import evaluate_phantoms, phantom_source
    from imgtool.pipeline import AnalysisOptions
    from imgtool.synth import GENERATOR_VERSION
    from imgtool.synth.store import pair_seed

    seeds = [pair_seed(seed, i) for i in range(n)]
    if any(s in train_seeds for s in seeds):
        raise SystemExit(f"phantom run seed {seed} draws a training seed; choose another")
    out: dict[str, Any] = {"run_seed": seed, "pairs": n, "photos": 2 * n, "size": list(size), "generator_version": GENERATOR_VERSION}
    for method in methods:
        seg_method, augment = _split(method)
        opts = AnalysisOptions(method=seg_method, augment=augment)
        ev = evaluate_phantoms(phantom_source(n, seed, size=size), options=opts, source=f"--phantoms {n} --seed {seed}")
        seg = ev.summary["segmentation"]
        out[method] = {c: {"dice_pooled": seg[c]["dice_pooled"], "dice_mean": seg[c]["dice_mean"], "iou_pooled": seg[c]["iou_pooled"]} for c in ("background", "skin", "lesion", "hair")}
    return out


def eval_samples(model: Any, methods: list[str]) -> dict[str, Any]:
    """Pixel accuracy and per-class Dice on ``sample_images/`` against their exact truth (``sample_images/truth``)."""
    import numpy as np

    from imgtool.evaluate import overlap_scores
    from imgtool.io import read_image, read_labels
    from imgtool.labels import CLASS_NAMES
    from imgtool.segmentation import segment_labels

    from dataclasses import replace

    out: dict[str, Any] = {}
    for photo in sorted((REPO / "sample_images").glob("*.jpg")):
        truth_path = REPO / "sample_images" / "truth" / f"{photo.stem}_labels.png"
        if not truth_path.is_file():
            continue
        img, _ = read_image(photo)
        truth = read_labels(truth_path)[0]
        rec: dict[str, Any] = {}
        for method in methods:
            m, aug = _split(method)
            labels = segment_labels([img], method=m, model=replace(model, augment=aug) if m == "cnn" else None)[0]
            dice = {}
            for k, name in enumerate(CLASS_NAMES):
                d = overlap_scores(labels == k, truth == k)["dice"]
                dice[name] = None if d is None else round(d, 4)
            rec[method] = {"accuracy": round(float(np.mean(labels == truth)), 4), "dice": dice}
        out[photo.stem] = rec
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None, help="training config with the split (default: models/<name>.train.json, else the card's)")
    p.add_argument("--phantoms", type=int, default=15, help="number of test phantom pairs (0 to skip)")
    p.add_argument("--phantom-seed", type=int, default=7_000_000)
    p.add_argument("--phantom-size", type=int, nargs=2, default=[1024, 768], metavar=("W", "H"))
    p.add_argument("--data-root", default=None, help="folder of the real sets (default: the config's)")
    p.add_argument("--update-card", action="store_true", help="write the metrics into the model card")
    p.add_argument("--augment", action="store_true", help="also score the CNN with test-time augmentation (column cnn+augment)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval_segment.json"))
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))

    from dataclasses import replace

    from imgtool.io import write_json
    from imgtool.segmentation.model import _model_paths, load_model
    from imgtool.segmentation.train import TrainConfig, is_average_config, load_train_config

    model = load_model(None, device="cpu")  # imgtool evaluate scores the shipped default model
    default_config = REPO / "models" / f"{model.name}.train.json"
    # An averaging stage has no data of its own: its card keeps the parents' shared config
    # (the same real-set split; the test phantom seeds are far from every stage's).
    if args.config or (default_config.is_file() and not is_average_config(default_config)):
        cfg = load_train_config(args.config or default_config)
    else:
        cfg = TrainConfig.from_dict(model.card["training"]["config"])
        cfg = replace(cfg, config_dir=str(REPO / "models"))
    if args.data_root:
        cfg = replace(cfg, data_root=args.data_root)
    methods = ["cnn", "classical"] + (["cnn+augment"] if args.augment else [])
    t0 = time.perf_counter()
    result: dict[str, Any] = {"model": model.info(), "real_sets": eval_real(cfg, methods)}
    if args.phantoms:
        ph = cfg.phantoms
        train_seeds = range(ph.seed_start, ph.seed_start + ph.count) if ph else range(0)
        result["phantoms"] = eval_phantoms(methods, args.phantom_seed, args.phantoms, tuple(args.phantom_size), train_seeds)
    result["sample_images"] = eval_samples(model, methods)
    result["seconds"] = round(time.perf_counter() - t0, 1)

    print(f"model {model.name} ({model.sha256[:12]}...)")
    extra = f" {'cnn+augment':>11}" if args.augment else ""
    print(f"{'set':<24} {'class':<7} {'n':>3} {'metric':<7} {'cnn':>7} {'classical':>9}{extra}")
    for name, rec in result["real_sets"].items():
        metric = "dice" if rec["class"] == "lesion" else "iou"
        aug = f" {rec['cnn+augment']['pooled'][metric]:>11.3f}" if args.augment else ""
        print(f"{name:<24} {rec['class']:<7} {rec['n_images']:>3} {metric:<7} {rec['cnn']['pooled'][metric]:>7.3f} {rec['classical']['pooled'][metric]:>9.3f}{aug}")
    if "phantoms" in result:
        ph = result["phantoms"]
        nan = float("nan")
        for cls in ("skin", "lesion", "hair"):
            cnn, cl = ph["cnn"][cls]["dice_pooled"], ph["classical"][cls]["dice_pooled"]
            aug_v = ph["cnn+augment"][cls]["dice_pooled"] if args.augment else None
            aug = (f" {aug_v if aug_v is not None else nan:>11.3f}") if args.augment else ""
            print(f"{'phantoms':<24} {cls:<7} {2 * args.phantoms:>3} {'dice':<7} {cnn if cnn is not None else nan:>7.3f} {cl if cl is not None else nan:>9.3f}{aug}")
    for stem, rec in result["sample_images"].items():
        for key in ("accuracy", "skin", "lesion", "hair"):
            cnn, cl = (rec[m]["accuracy"] if key == "accuracy" else rec[m]["dice"][key] for m in methods[:2])
            if cnn is not None:
                cl_text = "-" if cl is None else f"{cl:.3f}"
                print(f"{stem:<24} {key:<7} {1:>3} {'acc' if key == 'accuracy' else 'dice':<7} {cnn:>7.3f} {cl_text:>9}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(f"wrote {out}")
    if args.update_card:
        _, card_path = _model_paths(None)
        card = json.loads(card_path.read_text())
        card["metrics"] = {k: v for k, v in result.items() if k in ("real_sets", "phantoms", "sample_images")}
        card["metrics"]["measured_with"] = "python benchmarks/eval_segment.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_json(card_path, card)
        print(f"updated {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
