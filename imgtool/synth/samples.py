"""The project's sample pairs (``sample_images/``), drawn by the phantom generator.

They follow the case that motivated imgtool: a patient with atopic dermatitis and
alopecia universalis, photographed at month 0 and again at month 10 of treatment.

* ``back``: posterior upper body; month 0 with several eczema patches and near-total
  loss of body hair; month 10 with most patches resolved or faded, one new small
  patch, and body hair regrown.
* ``scalp``: the scalp from above; month 0 bald (alopecia universalis), month 10 with
  the hair regrown.

Regenerate them with::

    python -m imgtool.synth.samples -o sample_images
"""

from __future__ import annotations

import argparse
import io as _io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import PathLike, ensure_output_dir, write_bytes, write_json, write_png
from .core import DiseaseChange, PhantomPair, SynthOptions, render_pair


@dataclass(frozen=True)
class SampleSpec:
    """One sample pair: the seed, what to draw and how the disease changes."""

    view: str
    seed: int
    options: SynthOptions
    change: DiseaseChange


SAMPLES: tuple[SampleSpec, ...] = (
    SampleSpec(
        "back",
        22,
        SynthOptions(
            views=("back",),
            fitzpatrick=(2, 3),
            backgrounds=("wall",),
            close_up=0.0,
            lesions=(4, 6),
            lesion_contrast=(0.45, 1.0),
            hair_loss=(0.9, 0.97),
            artefacts=0.35,
            nonrigid=0.0,
        ),
        DiseaseChange(resolve=0.6, shrink=0.3, fade=0.55, new_lesions=1, residue=0.5, hair_loss_after=0.08, regrowth_white=0.15),
    ),
    SampleSpec(
        "scalp",
        7,
        SynthOptions(
            views=("scalp",),
            fitzpatrick=(2, 3),
            backgrounds=("wall", "sheet"),
            close_up=0.0,
            lesions=(1, 2),
            lesion_contrast=(0.3, 0.7),
            hair_loss=(1.0, 1.0),
            artefacts=0.35,
            nonrigid=0.0,
        ),
        DiseaseChange(resolve=1.0, residue=0.3, hair_loss_after=0.04, regrowth_islands=0, regrowth_white=0.1),
    ),
)

#: Size of the sample photos (width, height) and their JPEG quality.
SAMPLE_SIZE = (1600, 1200)
JPEG_QUALITY = 92


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
    return buf.getvalue()


def write_sample(spec: SampleSpec, out_dir: PathLike, size: tuple[int, int] = SAMPLE_SIZE) -> dict[str, Any]:
    """Draw one sample pair and write its photos (JPEG), label maps and truth.

    Files: ``<view>_month00.jpg``, ``<view>_month10.jpg`` and, under ``truth/``,
    ``<view>_truth.json``, ``<view>_month00_labels.png`` and ``<view>_month10_labels.png``.

    Returns
    -------
    dict
        The truth written.
    """
    out = ensure_output_dir(out_dir)
    truth_dir = ensure_output_dir(out / "truth")
    pair: PhantomPair = render_pair(spec.seed, size=size, options=spec.options, change=spec.change)
    write_bytes(out / f"{spec.view}_month00.jpg", _jpeg(pair.before, JPEG_QUALITY))
    write_bytes(out / f"{spec.view}_month10.jpg", _jpeg(pair.after, JPEG_QUALITY))
    write_png(truth_dir / f"{spec.view}_month00_labels.png", pair.before_labels)
    write_png(truth_dir / f"{spec.view}_month10_labels.png", pair.after_labels)
    truth = dict(pair.truth)
    truth["files"] = {
        "before": f"{spec.view}_month00.jpg",
        "after": f"{spec.view}_month10.jpg",
        "before_labels": f"truth/{spec.view}_month00_labels.png",
        "after_labels": f"truth/{spec.view}_month10_labels.png",
        "jpeg_quality": JPEG_QUALITY,
    }
    write_json(truth_dir / f"{spec.view}_truth.json", truth)
    return truth


def main(argv: Sequence[str] | None = None) -> int:
    """Write every sample pair into the folder given by ``-o``."""
    ap = argparse.ArgumentParser(prog="python -m imgtool.synth.samples", description="Draw imgtool's sample before/after pairs.")
    ap.add_argument("-o", "--out", default="sample_images", help="output folder (default sample_images)")
    args = ap.parse_args(argv)
    for spec in SAMPLES:
        truth = write_sample(spec, args.out)
        m = truth["metrics"]
        print(
            f"{spec.view}: lesion {m['before']['lesion_area_px']} -> {m['after']['lesion_area_px']} px, "
            f"hair coverage {m['before']['hair_coverage']:.3f} -> {m['after']['hair_coverage']:.3f}"
        )
    print(f"wrote {Path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
