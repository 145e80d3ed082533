"""Writing phantom pairs to folders and reading them back.

Layout of ``imgtool synth -o DIR``::

    DIR/<id>/before.png          month-0 photo
    DIR/<id>/after.png           month-10 photo
    DIR/<id>/before_labels.png   exact label maps (label contract)
    DIR/<id>/after_labels.png
    DIR/<id>/truth.json          homography (after -> before), metrics, how it was drawn
    DIR/<id>/displacement.npy    only where the body moved non-rigidly: (H, W, 2) float32
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np

from ..errors import InputError, UsageError
from ..io import PathLike, ensure_output_dir, read_image, read_labels, write_bytes, write_json, write_png
from .core import DiseaseChange, PhantomPair, SynthOptions, render_pair

logger = logging.getLogger(__name__)

PAIR_FILES = ("before.png", "after.png", "before_labels.png", "after_labels.png", "truth.json")
DISPLACEMENT_FILE = "displacement.npy"


def pair_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th pair of a run started with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1)[0])


def pair_id(seed: int, index: int) -> str:
    """Folder name of the ``index``-th pair of a run started with ``seed``."""
    return f"s{int(seed)}_{int(index):05d}"


def write_pair(pair: PhantomPair, folder: PathLike) -> Path:
    """Write one pair's photos, label maps, truth (and displacement) into ``folder``.

    Returns
    -------
    Path
        The folder.
    """
    out = ensure_output_dir(folder)
    write_png(out / "before.png", pair.before)
    write_png(out / "after.png", pair.after)
    write_png(out / "before_labels.png", pair.before_labels)
    write_png(out / "after_labels.png", pair.after_labels)
    truth = dict(pair.truth)
    if pair.displacement is not None:
        import io as _io

        buf = _io.BytesIO()
        np.save(buf, np.ascontiguousarray(pair.displacement, dtype=np.float32), allow_pickle=False)
        write_bytes(out / DISPLACEMENT_FILE, buf.getvalue())
        truth["displacement"] = DISPLACEMENT_FILE
    write_json(out / "truth.json", truth)
    return out


def read_pair(folder: PathLike) -> PhantomPair:
    """Read a pair written by :func:`write_pair`.

    Raises
    ------
    InputError
        A file is missing or unreadable, or the truth file is not a phantom's.
    """
    import json

    root = Path(folder)
    for name in PAIR_FILES:
        if not (root / name).is_file():
            raise InputError(f"{root}: not a phantom pair folder ({name} is missing)")
    try:
        truth = json.loads((root / "truth.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{root / 'truth.json'}: unreadable ({exc})") from None
    if "homography" not in truth or "metrics" not in truth:
        raise InputError(f"{root / 'truth.json'}: no homography or metrics")
    before, _ = read_image(root / "before.png")
    after, _ = read_image(root / "after.png")
    lab_b = _read_labels(root / "before_labels.png")
    lab_a = _read_labels(root / "after_labels.png")
    disp = None
    if truth.get("displacement"):
        try:
            disp = np.load(root / str(truth["displacement"]), allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise InputError(f"{root}: displacement file unreadable ({exc})") from None
    hom = np.asarray(truth["homography"], dtype=np.float64)
    return PhantomPair(int(truth.get("seed", -1)), before, after, lab_b, lab_a, hom, disp, truth)


def _read_labels(path: Path) -> np.ndarray:
    """A truth label map (:func:`imgtool.io.read_labels`, without its info)."""
    return read_labels(path, name="label map")[0]


def find_pairs(folder: PathLike) -> list[Path]:
    """Pair folders under ``folder`` (those holding a truth.json), sorted; ``folder`` itself if it is one."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if (root / "truth.json").is_file():
        return [root]
    return sorted(p.parent for p in root.glob("*/truth.json"))


@dataclass(frozen=True)
class _Job:
    seed: int
    index: int
    size: tuple[int, int]
    options: SynthOptions
    change: str | DiseaseChange
    out: str


def _run_job(job: _Job) -> str:
    pair = render_pair(pair_seed(job.seed, job.index), size=job.size, options=job.options, change=job.change)
    folder = Path(job.out) / pair_id(job.seed, job.index)
    write_pair(pair, folder)
    return str(folder)


def synthesize(
    out_dir: PathLike,
    n: int,
    seed: int,
    *,
    size: tuple[int, int] = (1024, 1024),
    options: SynthOptions | None = None,
    change: Literal["random", "none"] | DiseaseChange = "random",
    jobs: int = 1,
) -> list[Path]:
    """Draw ``n`` phantom pairs into ``out_dir`` (what ``imgtool synth`` runs).

    Parameters
    ----------
    out_dir : path-like
        Output folder; pair ``i`` goes to ``out_dir/s<seed>_<i>``.
    n : int
        Number of pairs.
    seed : int
        Run seed; pair ``i`` is drawn from :func:`pair_seed` ``(seed, i)``.
    size : (width, height)
        Photo size.
    options : SynthOptions, optional
        What kinds of phantoms to draw.
    change : "random", "none" or DiseaseChange
        Disease course of every pair.
    jobs : int
        Worker processes (the output does not depend on it).

    Returns
    -------
    list of Path
        The pair folders, in index order.

    Raises
    ------
    UsageError
        Bad counts, sizes or options.
    OutputError
        The folder cannot be written.
    """
    if n < 1:
        raise UsageError(f"number of pairs must be at least 1, got {n}")
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, got {jobs}")
    opts = options or SynthOptions()
    out = ensure_output_dir(out_dir)
    work = [_Job(int(seed), i, tuple(size), opts, change, str(out)) for i in range(n)]
    done: list[Path] = []
    if jobs == 1 or n == 1:
        for j in work:
            done.append(Path(_run_job(j)))
            logger.info("wrote %s", done[-1])
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, n, os.cpu_count() or 1)) as ex:
            for folder in ex.map(_run_job, work):
                done.append(Path(folder))
                logger.info("wrote %s", folder)
    return done


def iter_pairs(sources: Sequence[PathLike]) -> Iterator[tuple[str, PhantomPair]]:
    """``(id, pair)`` for every pair folder under the given folders."""
    for src in sources:
        for folder in find_pairs(src):
            yield folder.name, read_pair(folder)
