"""Command-line interface: parses arguments and calls the public API, nothing more.

Exit codes: 0 success; 1 bad input (unreadable photo, unwritable output, ...);
2 usage error (unknown option, bad value); 3 internal error (a bug: please report it);
130 interrupted. Errors are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Sequence

from ._version import __version__
from .errors import ImgtoolError, UsageError

if TYPE_CHECKING:
    from .pipeline import AnalysisOptions

logger = logging.getLogger("imgtool")

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return v


def _nonnegative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return v


def _add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=None,
        metavar="N",
        help="refuse images with more pixels than N (default 100000000)",
    )


def _add_method(p: argparse.ArgumentParser) -> None:
    from .segmentation import DEFAULT_METHOD, METHODS

    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help=f"segmentation method (default {DEFAULT_METHOD})")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the CNN runs: auto picks CUDA when present (default auto)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="N", help="tiles per CNN forward pass (default 1 on CPU, 16 on CUDA)")
    p.add_argument("--augment", action="store_true", help="CNN test-time augmentation: average the tile and its mirror images (4x the network's work)")


def _add_nonrigid(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nonrigid",
        action="store_true",
        help="after the homography, estimate a smooth displacement field (curved body views); "
        "analyze writes it to displacement.npz and reports the change metrics with and without it",
    )


def _add_reconcile(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-reconcile",
        dest="reconcile",
        action="store_false",
        help="count every lesion-label disagreement of the aligned pair as change, even where the photos' colours did not change "
        "(default: such disagreements are segmentation noise and are reset; docs/metrics.md)",
    )
    p.add_argument(
        "--no-local-light",
        dest="local_light",
        action="store_false",
        help="when reconciling, judge a lesion region's colour change as measured only, not also net of the change of the "
        "healthy skin around it (default: both, the smaller counts; docs/metrics.md)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``imgtool`` command."""
    parser = _Parser(
        prog="imgtool",
        description="Measure eczema area and hair coverage on before/after photos of one body view.",
    )
    parser.add_argument("--version", action="version", version=f"imgtool {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("analyze", help="register, segment and quantify a before/after pair")
    p.add_argument("before", help="month-0 (reference) photo")
    p.add_argument("after", help="follow-up photo of the same view")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--pixel-size-mm", type=_positive_float, default=None, metavar="F", help="BEFORE's pixel side in mm")
    p.add_argument(
        "--after-pixel-size-mm",
        type=_positive_float,
        default=None,
        metavar="F",
        help="AFTER's pixel side in mm (default: from BEFORE's and the registration scale)",
    )
    p.add_argument("--roi", default=None, metavar="MASK", help="region-of-interest mask in BEFORE's frame (non-zero = inside)")
    p.add_argument(
        "--min-lesion-area",
        type=_nonnegative_int,
        default=None,
        metavar="PX",
        help="smallest lesion counted as an object, in BEFORE's pixels (default 1e-4 of BEFORE's pixels)",
    )
    p.add_argument("--view", default=None, metavar="NAME", help="body view named in the report (default: from BEFORE's file name)")
    _add_method(p)
    _add_limits(p)
    _add_nonrigid(p)
    _add_reconcile(p)

    p = sub.add_parser("register", help="register AFTER onto BEFORE and print the result as JSON")
    p.add_argument("before")
    p.add_argument("after")
    _add_limits(p)
    _add_nonrigid(p)
    p.add_argument(
        "--save-displacement",
        default=None,
        metavar="FILE",
        help="with --nonrigid, write the displacement field to FILE (.npz)",
    )

    p = sub.add_parser("segment", help="segment photos into background, skin, lesion and hair")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--pixel-size-mm", type=_positive_float, default=None, metavar="F")
    p.add_argument("--roi", default=None, metavar="MASK", help="region-of-interest mask (same size as every image)")
    _add_method(p)
    _add_limits(p)

    p = sub.add_parser("salt", help="SALT hair-loss score of four scalp views (top, back, left, right)")
    p.add_argument("views", nargs=4, metavar="VIEW", help="the four scalp photos in the order TOP BACK LEFT RIGHT (label maps with --labels)")
    p.add_argument("--labels", action="store_true", help="the four inputs are label maps (0 background, 1 skin, 2 lesion, 3 hair), not photos")
    p.add_argument(
        "--scalp-masks",
        nargs=4,
        default=None,
        metavar=("TOP", "BACK", "LEFT", "RIGHT"),
        help="scalp-area masks of the four views (non-zero = scalp); default each view's non-background area",
    )
    p.add_argument("-o", "--out", default=None, metavar="FILE", help="also write the result to this JSON file")
    _add_method(p)
    _add_limits(p)

    p = sub.add_parser("train", help="train the segmentation CNN from a config file (or average finished runs' weights)")
    p.add_argument("config", help="training config (JSON), e.g. models/unet_s_v5.train.json; one with an 'average' section averages the weights of the models it lists")
    p.add_argument("-o", "--out", required=True, help="folder for checkpoint, log and the trained weights")
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to train: auto picks CUDA when present (AMP and channels-last there); default auto",
    )
    p.add_argument(
        "--loader-threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="threads that draw augmented batches ahead of training; changes speed only, never the result; default 1",
    )
    p.add_argument(
        "--stop-after",
        type=_positive_int,
        default=None,
        metavar="STEP",
        help="end after this step (checkpoint and weights of that step; the schedule still spans the config's steps; --resume goes on)",
    )

    p = sub.add_parser("synth", help="draw phantom before/after pairs whose truth is known exactly")
    p.add_argument("-o", "--out", required=True, help="output folder (one sub-folder per pair)")
    p.add_argument("--n", type=_positive_int, default=10, metavar="N", help="number of pairs (default 10)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="run seed; same seed, same pairs (default 0)")
    p.add_argument("--size", type=_size, default=(1024, 1024), metavar="WxH", help="photo size (default 1024x1024)")
    p.add_argument("--change", choices=("random", "none"), default="random", help="disease course: random, or none (repeatability pairs)")
    _add_synth_options(p)
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="J", help="worker processes (output does not depend on it)")

    p = sub.add_parser("synth-sheet", help="render a contact sheet of phantoms; optionally compare their statistics with real photos")
    p.add_argument("-o", "--out", required=True, metavar="PNG", help="contact sheet file (PNG)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the first pair (default 0)")
    p.add_argument("--pairs", type=_positive_int, default=10, metavar="N", help="pairs on the sheet (default 10)")
    p.add_argument("--tile", type=_positive_int, default=200, metavar="PX", help="side of each photo on the sheet (default 200)")
    p.add_argument("--size", type=_size, default=(768, 768), metavar="WxH", help="size the phantoms are drawn at (default 768x768)")
    p.add_argument("--real", action="append", default=[], metavar="DIR", help="folder of real photos with masks to compare with (repeatable)")
    p.add_argument("--stats-photos", type=_positive_int, default=60, metavar="N", help="phantom photos measured for the comparison (default 60)")
    p.add_argument("--stats-out", default=None, metavar="JSON", help="write the statistics here")

    p = sub.add_parser("evaluate", help="score the pipeline on phantom pairs or on real photos with masks")
    p.add_argument("source", nargs="?", default=None, help="folder of phantom pairs (from 'imgtool synth') or of photos with masks")
    p.add_argument("-o", "--out", required=True, help="output folder (evaluation.json, summary.csv, per_photo.csv, per_pair.csv)")
    _add_method(p)
    g = p.add_argument_group("phantoms drawn on the fly (instead of a folder)")
    g.add_argument("--phantoms", type=_positive_int, default=None, metavar="N", help="draw N pairs in memory and score them")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the drawn pairs (default 0)")
    g.add_argument("--size", type=_size, default=(1024, 1024), metavar="WxH", help="size of the drawn pairs (default 1024x1024)")
    g.add_argument("--change", choices=("random", "none"), default="random", help="disease course of the drawn pairs")
    _add_reconcile(g)
    _add_nonrigid(g)
    g = p.add_argument_group("real photos with masks")
    g.add_argument("--class", dest="mask_class", choices=("lesion", "hair"), default=None, help="which class the masks mark (default: from the folder's convention)")
    g.add_argument("--images", default=None, metavar="GLOB", help="which files are photos, e.g. '*.jpg' (with --mask-pattern)")
    g.add_argument("--mask-pattern", default=None, metavar="PATTERN", help="mask file name, {id} = photo name without extension, e.g. '{id}_mask.png'")
    g.add_argument("--id-suffix", default="", metavar="TEXT", help="end of the photo's name that is not part of {id} (e.g. '-org')")
    g.add_argument("--mask-threshold", type=int, default=None, metavar="T", help="mask pixels >= T are inside (default 128, or 1 for Figaro)")
    g.add_argument("--mask-scale", type=_positive_float, default=None, metavar="F", help="mask size relative to the photo, e.g. 0.5 (default: same size, or inferred)")
    g.add_argument("--split", default=None, metavar="FILE", help="score only the ids listed in FILE (text, or JSON list / object)")
    g.add_argument("--split-key", default=None, metavar="KEY", help="list inside a JSON split file, dots for nesting (default 'test')")
    g.add_argument("--ids", default=None, metavar="A,B,...", help="score only these ids")

    p = sub.add_parser("batch", help="analyse every pair of a CSV manifest into one folder and one results.csv")
    p.add_argument("manifest", help="CSV with pair_id, before, after (or patient_id, view, timepoint, image); other columns pass through")
    p.add_argument("-o", "--out", required=True, help="output folder: one sub-folder per pair and results.csv")
    p.add_argument("--workers", type=_nonnegative_int, default=None, metavar="N", help="worker processes for reading, registration and quantification (default: one per core; 0: one process)")
    p.add_argument("--resume", action="store_true", help="skip pairs whose outputs are complete and made from the same inputs, settings and model")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N", help="run only shard I of N (1-based; for array jobs sharing one output folder)")
    p.add_argument("--consecutive", action="store_true", help="longitudinal manifests: also compare each timepoint with the previous one")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dask-scheduler", default=None, metavar="ADDRESS", help="run pairs as Dask tasks on this scheduler (tcp://host:port)")
    g.add_argument("--dask-local", type=_positive_int, default=None, metavar="N", help="run pairs as Dask tasks on a local cluster of N worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--pixel-size-mm", type=_positive_float, default=None, metavar="F", help="BEFORE's pixel side in mm for rows without pixel_size_mm")
    p.add_argument("--min-lesion-area", type=_nonnegative_int, default=None, metavar="PX", help="smallest lesion counted as an object (default 1e-4 of BEFORE's pixels)")
    _add_method(p)
    _add_limits(p)
    _add_nonrigid(p)
    _add_reconcile(p)
    return parser


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 1/4, got {text!r}") from None
    if not (n >= 1 and 1 <= i <= n):
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, got {text!r}")
    return i, n


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1024x768, got {text!r}") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size must be 64..8192 px on each side, got {text!r}")
    return w, h


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _methods() -> tuple[str, ...]:
    from .segmentation import METHODS

    return METHODS


def _default_method() -> str:
    from .segmentation import DEFAULT_METHOD

    return DEFAULT_METHOD


def _add_synth_options(p: argparse.ArgumentParser) -> None:
    from .synth import BACKGROUNDS, VIEWS

    p.add_argument("--views", type=_str_list, default=None, metavar="LIST", help=f"body views to draw (default all: {','.join(VIEWS)})")
    p.add_argument("--fitzpatrick", type=_int_list, default=None, metavar="LIST", help="skin types 1..6 to draw (default all)")
    p.add_argument("--backgrounds", type=_str_list, default=None, metavar="LIST", help=f"backgrounds (default all: {','.join(BACKGROUNDS)})")
    p.add_argument("--close-up", type=float, default=None, metavar="P", help="probability of a close-up (default 0.35)")
    p.add_argument("--texture-dir", default=None, metavar="DIR", help="draw on real skin and hair patches from the photos in DIR (never stored)")
    p.add_argument("--textures", default=None, metavar="FILE", help="like --texture-dir, from a list of photo files (one per line)")


def _max_pixels(args: argparse.Namespace) -> int:
    from .io import DEFAULT_MAX_PIXELS

    value = getattr(args, "max_pixels", None)  # not every command has --max-pixels
    return value if value is not None else DEFAULT_MAX_PIXELS


def _analysis_options(args: argparse.Namespace) -> AnalysisOptions:
    """The analysis settings a command's flags give (analyze, batch and evaluate share them).

    Each command defines the flags that apply to it; a flag it lacks keeps
    AnalysisOptions' default (batch has no --view: the report guesses each pair's view
    from its file name).
    """
    from .pipeline import AnalysisOptions
    from .registration import RegistrationOptions

    flags = {
        "method": "method",
        "pixel_size_mm": "pixel_size_mm",
        "after_pixel_size_mm": "after_pixel_size_mm",
        "min_lesion_area_px": "min_lesion_area",
        "view": "view",
        "augment": "augment",
        "reconcile": "reconcile",
        "local_light": "local_light",
    }
    kw = {name: getattr(args, flag) for name, flag in flags.items() if hasattr(args, flag)}
    return AnalysisOptions(max_pixels=_max_pixels(args), registration=RegistrationOptions(nonrigid=args.nonrigid), **kw)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .io import ensure_output_dir
    from .pipeline import analyze_pair
    from .report import write_analysis

    opts = _analysis_options(args)
    # Check the output folder before the (long) analysis, not after it.
    ensure_output_dir(args.out)
    result = analyze_pair(args.before, args.after, roi=args.roi, options=opts, device=args.device, batch_size=args.batch_size)
    # The pipeline logs its warnings (to stderr through the logging set up in main).
    files = write_analysis(result, args.out)
    logger.info("wrote %s", ", ".join(str(p) for p in files.values()))
    return EXIT_OK


def _cmd_register(args: argparse.Namespace) -> int:
    from .io import read_image, to_json, write_bytes
    from .registration import RegistrationOptions, register

    if args.save_displacement and not args.nonrigid:
        raise UsageError("--save-displacement needs --nonrigid")
    before, _ = read_image(args.before, max_pixels=_max_pixels(args))
    after, _ = read_image(args.after, max_pixels=_max_pixels(args))
    reg = register(before, after, options=RegistrationOptions(nonrigid=args.nonrigid))
    if args.save_displacement and reg.displacement is not None and reg.homography is not None:
        write_bytes(args.save_displacement, reg.displacement.to_npz_bytes(reg.homography))
    sys.stdout.write(to_json(reg.to_dict()))
    return EXIT_OK


def _cmd_segment(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .io import ensure_output_dir, read_image_header
    from .report import write_segmentation
    from .segmentation import prepare_model, segment

    stems: dict[str, str] = {}
    for path in args.images:
        stem = Path(path).stem
        if stem in stems:
            raise UsageError(f"{path} and {stems[stem]} would both write {stem}_labels.png; segment them into different folders")
        stems[stem] = path
    ensure_output_dir(args.out)
    # Check every header first, so a missing or non-image file stops the run before
    # anything is written; then segment one photo at a time to bound memory.
    for path in args.images:
        w, h, _ = read_image_header(path)
        if w * h > _max_pixels(args):
            raise InputError(f"{path}: image has {w * h / 1e6:.1f} megapixels, over the limit of {_max_pixels(args) / 1e6:.1f}")
    model = prepare_model(args.method, None, args.device, augment=args.augment)
    for path in args.images:
        res = segment(
            path,
            method=args.method,
            roi=args.roi,
            pixel_size_mm=args.pixel_size_mm,
            max_pixels=_max_pixels(args),
            model=model,
            batch_size=args.batch_size,
        )
        write_segmentation(res, args.out, Path(path).stem)
    return EXIT_OK


def _cmd_salt(args: argparse.Namespace) -> int:
    from .io import to_json, write_json
    from .salt import SALT_VIEWS, score_salt_views

    views = dict(zip(SALT_VIEWS, args.views))
    masks = None if args.scalp_masks is None else dict(zip(SALT_VIEWS, args.scalp_masks))
    res = score_salt_views(
        views,
        scalp_masks=masks,
        labels_given=args.labels,
        method=args.method,
        device=args.device,
        batch_size=args.batch_size,
        augment=args.augment,
        max_pixels=_max_pixels(args),
    )
    doc = res.to_dict()
    if args.out is not None:
        write_json(args.out, doc)
    sys.stdout.write(to_json(doc))
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from .segmentation.train import run_config

    result = run_config(args.config, args.out, resume=args.resume, device=args.device, loader_threads=args.loader_threads, stop_after=args.stop_after)
    print(result.weights)
    return EXIT_OK


def _synth_options(args: argparse.Namespace) -> object:
    from pathlib import Path as _Path

    from .synth import SynthOptions, load_texture_bank, texture_files

    kw: dict[str, object] = {}
    if args.views is not None:
        kw["views"] = args.views
    if args.fitzpatrick is not None:
        kw["fitzpatrick"] = args.fitzpatrick
    if args.backgrounds is not None:
        kw["backgrounds"] = args.backgrounds
    if args.close_up is not None:
        kw["close_up"] = args.close_up
    if args.texture_dir is not None and args.textures is not None:
        raise UsageError("give --texture-dir or --textures, not both")
    files = None
    if args.texture_dir is not None:
        files = texture_files(args.texture_dir)
    elif args.textures is not None:
        try:
            lines = _Path(args.textures).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"{args.textures}: cannot read the texture list ({exc.strerror})") from None
        files = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if files is not None:
        kw["textures"] = load_texture_bank(files)
    return SynthOptions(**kw)


def _cmd_synth(args: argparse.Namespace) -> int:
    from .synth.store import synthesize

    opts = _synth_options(args)
    folders = synthesize(args.out, args.n, args.seed, size=args.size, options=opts, change=args.change, jobs=args.jobs)
    print(f"wrote {len(folders)} phantom pairs to {args.out}")
    return EXIT_OK


def _cmd_synth_sheet(args: argparse.Namespace) -> int:
    from .io import write_json
    from .synth.realism import compare_stats, format_stats
    from .synth.sheet import write_contact_sheet

    write_contact_sheet(args.out, seed=args.seed, pairs=args.pairs, tile=args.tile, size=args.size)
    print(f"wrote {args.out}")
    if args.real:
        stats = compare_stats(args.real, seed=args.seed, photos=args.stats_photos)
        print(format_stats(stats))
        if args.stats_out:
            write_json(args.stats_out, stats)
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .datasets import MaskConvention, read_id_list
    from .evaluate import describe_source, evaluate_masks, evaluate_phantoms, format_table, phantom_source, write_evaluation
    from .io import ensure_output_dir

    if (args.source is None) == (args.phantoms is None):
        raise UsageError("give a SOURCE folder or --phantoms N (one of them)")
    ensure_output_dir(args.out)
    if args.phantoms is not None or describe_source(args.source) == "phantoms":
        opts = _analysis_options(args)
        if args.phantoms is not None:
            pairs = phantom_source(args.phantoms, args.seed, size=args.size, change=args.change)
            source = f"drawn: --phantoms {args.phantoms} --seed {args.seed} --size {args.size[0]}x{args.size[1]} --change {args.change}"
        else:
            from .synth.store import iter_pairs

            pairs, source = iter_pairs([args.source]), str(args.source)
        ev = evaluate_phantoms(pairs, options=opts, source=source, device=args.device, batch_size=args.batch_size)
    else:
        conv = None
        if args.images is not None or args.mask_pattern is not None:
            if args.mask_pattern is None:
                raise UsageError("--images needs --mask-pattern (e.g. '{id}_mask.png')")
            conv = MaskConvention(
                "custom",
                args.images or "*",
                args.mask_pattern,
                id_suffix=args.id_suffix,
                threshold=128 if args.mask_threshold is None else args.mask_threshold,
                mask_scale=args.mask_scale,
                mask_class=args.mask_class,
            )
        elif args.mask_threshold is not None or args.mask_scale is not None:
            from dataclasses import replace

            from .datasets import detect_convention

            base = detect_convention(args.source)
            conv = replace(
                base,
                threshold=base.threshold if args.mask_threshold is None else args.mask_threshold,
                mask_scale=base.mask_scale if args.mask_scale is None else args.mask_scale,
            )
        ids = read_id_list(args.ids, args.split, args.split_key)
        ev = evaluate_masks(
            args.source, mask_class=args.mask_class, method=args.method, convention=conv, ids=ids, augment=args.augment, device=args.device, batch_size=args.batch_size
        )
    files = write_evaluation(ev, args.out)
    print(format_table(ev))
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    return EXIT_OK


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import BatchOptions, run_batch

    opts = BatchOptions(
        analysis=_analysis_options(args),
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        resume=args.resume,
        shard=args.shard,
        consecutive=args.consecutive,
        dask_scheduler=args.dask_scheduler,
        dask_local=args.dask_local,
        progress=not args.quiet,
    )
    if (args.dask_local is not None or args.dask_scheduler is not None) and not args.verbose:
        try:  # distributed logs cluster start and stop at INFO; keep stderr to progress and problems
            import distributed  # noqa: F401

            logging.getLogger("distributed").setLevel(logging.WARNING)
        except ImportError:
            pass
    summary = run_batch(args.manifest, args.out, options=opts)
    print(f"batch: {summary.count('done')} done, {summary.count('skipped')} skipped, {summary.count('failed')} failed ({summary.results_csv})")
    return EXIT_OK if summary.ok else EXIT_INPUT


_COMMANDS = {"analyze": _cmd_analyze, "register": _cmd_register, "segment": _cmd_segment, "train": _cmd_train}
_COMMANDS["synth"] = _cmd_synth
_COMMANDS["synth-sheet"] = _cmd_synth_sheet
_COMMANDS["evaluate"] = _cmd_evaluate
_COMMANDS["salt"] = _cmd_salt
_COMMANDS["batch"] = _cmd_batch


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``imgtool`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Process exit code.
    """
    parser = build_parser()
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="imgtool: %(levelname)s: %(message)s",
            stream=sys.stderr,
        )
        return _COMMANDS[args.command](args)
    except ImgtoolError as exc:
        if debug:
            raise
        print(f"imgtool: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("imgtool: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if debug:
            raise
        print(f"imgtool: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
