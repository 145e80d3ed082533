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
from typing import NoReturn, Sequence

from ._version import __version__
from .errors import ImgtoolError, UsageError

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
    _add_method(p)
    _add_limits(p)

    p = sub.add_parser("register", help="register AFTER onto BEFORE and print the result as JSON")
    p.add_argument("before")
    p.add_argument("after")
    _add_limits(p)

    p = sub.add_parser("segment", help="segment photos into background, skin, lesion and hair")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--pixel-size-mm", type=_positive_float, default=None, metavar="F")
    p.add_argument("--roi", default=None, metavar="MASK", help="region-of-interest mask (same size as every image)")
    _add_method(p)
    _add_limits(p)

    p = sub.add_parser("train", help="train the segmentation CNN from a config file")
    p.add_argument("config", help="training config (JSON), e.g. models/unet_s_v1.train.json")
    p.add_argument("-o", "--out", required=True, help="folder for checkpoint, log and the trained weights")
    p.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    return parser


def _max_pixels(args: argparse.Namespace) -> int:
    from .io import DEFAULT_MAX_PIXELS

    return args.max_pixels if args.max_pixels is not None else DEFAULT_MAX_PIXELS


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .io import ensure_output_dir
    from .pipeline import AnalysisOptions, analyze_pair
    from .report import write_analysis

    opts = AnalysisOptions(
        method=args.method,
        pixel_size_mm=args.pixel_size_mm,
        after_pixel_size_mm=args.after_pixel_size_mm,
        max_pixels=_max_pixels(args),
    )
    # Check the output folder before the (long) analysis, not after it.
    ensure_output_dir(args.out)
    result = analyze_pair(args.before, args.after, roi=args.roi, options=opts, device=args.device)
    for w in result.warnings:
        print(f"imgtool: warning: {w}", file=sys.stderr)
    files = write_analysis(result, args.out)
    logger.info("wrote %s", ", ".join(str(p) for p in files.values()))
    return EXIT_OK


def _cmd_register(args: argparse.Namespace) -> int:
    from .io import read_image, to_json
    from .registration import register

    before, _ = read_image(args.before, max_pixels=_max_pixels(args))
    after, _ = read_image(args.after, max_pixels=_max_pixels(args))
    reg = register(before, after)
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
    model = prepare_model(args.method, None, args.device)
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


def _cmd_train(args: argparse.Namespace) -> int:
    from .segmentation.train import load_train_config, train

    result = train(load_train_config(args.config), args.out, resume=args.resume)
    logger.info("trained %s (loss %.4f -> %.4f)", result.weights, result.first_loss, result.last_loss)
    print(result.weights)
    return EXIT_OK


_COMMANDS = {"analyze": _cmd_analyze, "register": _cmd_register, "segment": _cmd_segment, "train": _cmd_train}


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
