"""Batch analysis of many pairs: ``imgtool batch`` and :func:`run_batch`.

* :mod:`.manifest`: the CSV manifest (pairs or longitudinal), checked up front;
* :mod:`.store`: atomic pair folders, fingerprints for resume, results.csv;
* :mod:`.stages`: the stages of one pair (read, segment, register + quantify + write);
* :mod:`.local`: one machine, worker processes around the process that holds the model;
* :mod:`.cluster`: many machines, pairs as Dask tasks.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io import PathLike, ensure_output_dir
from ..pipeline import AnalysisOptions, model_entry
from ..segmentation import load_model
from ..segmentation.model import resolve_device
from .local import DeviceStats, run_pipeline
from .manifest import Manifest, PairJob, check_pair_id, read_manifest
from .stages import PairOutcome, StageContext
from .store import BATCH_JSON, RESULTS_CSV, clean_partial, pair_dir, write_results

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOptions:
    """Settings of :func:`run_batch`.

    Attributes
    ----------
    analysis : AnalysisOptions
        Per-pair analysis settings (a manifest row's ``pixel_size_mm`` and ``view`` override them).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``: where the CNN runs.
    model : str or None
        Model name or path (None: the shipped default).
    batch_size : int or None
        Tiles per forward pass (default 1 on the CPU, 16 on CUDA).
    workers : int or None
        Local worker processes for reading, registration and quantification; 0 runs
        everything in one process; None: one per CPU core.
    pairs_per_call : int
        Most pairs whose photos the device segments in one call.
    resume : bool
        Skip pairs whose folder is complete and made from the same inputs, settings and model.
    shard : (int, int) or None
        ``(I, N)``: run only shard I of N (1-based, pairs dealt round-robin).
    consecutive : bool
        Longitudinal manifests: also compare each timepoint with the previous one.
    dask_scheduler : str or None
        Run pairs as Dask tasks on this scheduler.
    dask_local : int or None
        Run pairs as Dask tasks on a LocalCluster of this many worker processes.
    progress : bool
        Show a progress bar on stderr.
    """

    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    device: str = "auto"
    model: str | None = None
    batch_size: int | None = None
    workers: int | None = None
    pairs_per_call: int = 4
    resume: bool = False
    shard: tuple[int, int] | None = None
    consecutive: bool = False
    dask_scheduler: str | None = None
    dask_local: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"workers must be 0 or more, got {self.workers}")
        if self.pairs_per_call < 1:
            raise UsageError(f"pairs_per_call must be positive, got {self.pairs_per_call}")
        if self.dask_scheduler is not None and self.dask_local is not None:
            raise UsageError("give --dask-scheduler or --dask-local, not both")
        if self.dask_local is not None and self.dask_local < 1:
            raise UsageError(f"dask-local needs at least one worker, got {self.dask_local}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "analysis": self.analysis.to_dict(),
            "device": self.device,
            "model": self.model,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "pairs_per_call": self.pairs_per_call,
            "resume": self.resume,
            "shard": None if self.shard is None else list(self.shard),
            "consecutive": self.consecutive,
            "dask_scheduler": self.dask_scheduler,
            "dask_local": self.dask_local,
        }


@dataclass(frozen=True)
class BatchSummary:
    """What :func:`run_batch` did.

    Attributes
    ----------
    out : Path
        The output folder.
    results_csv : Path
        The table rebuilt from every finished pair folder.
    outcomes : tuple of PairOutcome
        One per pair of this run (this shard), in the order they ended.
    wall_s : float
        Wall time of the run.
    device : DeviceStats or None
        Device busy time (local path only).
    """

    out: Path
    results_csv: Path
    outcomes: tuple[PairOutcome, ...]
    wall_s: float
    device: DeviceStats | None = None

    def count(self, status: str) -> int:
        """Pairs of this run with ``status`` (``done``, ``skipped`` or ``failed``)."""
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        """True when no pair failed."""
        return self.count("failed") == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "results_csv": str(self.results_csv),
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "wall_s": self.wall_s,
            "pairs_per_s": (self.count("done") + self.count("failed")) / self.wall_s if self.wall_s > 0 else None,
            "device": None if self.device is None else self.device.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def run_batch(manifest: PathLike, out: PathLike, *, options: BatchOptions | None = None) -> BatchSummary:
    """Analyse every pair of a manifest into ``out``.

    Each pair gets ``out/<pair_id>/`` (its contract files and ``batch.json``), built
    in ``out/.partial`` and renamed into place; ``out/results.csv`` is rebuilt from the
    pair folders at the end. A pair that fails (unreadable photo, failed registration)
    gets a folder with the reason and the batch goes on.

    Parameters
    ----------
    manifest : path-like
        The CSV manifest (see :mod:`imgtool.batch.manifest`).
    out : path-like
        Output folder; created if needed.
    options : BatchOptions, optional
        Device, workers, resume, shard, Dask.

    Returns
    -------
    BatchSummary

    Raises
    ------
    UsageError
        A bad manifest (missing column, bad or duplicate pair_id, empty) or bad
        options; raised before anything is written.
    OutputError
        ``out`` cannot be written.
    ModelError
        The model cannot be loaded.
    """
    opts = options or BatchOptions()
    t0 = time.perf_counter()
    full = read_manifest(manifest, consecutive=opts.consecutive)
    run = full if opts.shard is None else full.shard(*opts.shard)
    out_dir = Path(out)
    for job in full.jobs:
        pair_dir(out_dir, job.pair_id)  # every folder must lie inside out (checked before writing)
    use_dask = opts.dask_scheduler is not None or opts.dask_local is not None
    # One model load in this process: the local device stage uses it, and its hash goes
    # into every pair's fingerprint. Dask workers load the same file themselves; here it
    # is loaded on the CPU only for its hash (the client may have no GPU).
    model = None
    device = opts.device
    if opts.analysis.method != "classical":
        if use_dask:
            device = resolve_device(opts.device).type if (opts.dask_local is not None or opts.device != "auto") else "auto"
            model = load_model(opts.model, device="cpu", augment=opts.analysis.augment)
        else:
            model = load_model(opts.model, device=opts.device, augment=opts.analysis.augment)
    entry = model_entry(opts.analysis.method, model)
    if use_dask and model is not None:
        entry["device"] = device
    ensure_output_dir(out_dir)
    clean_partial(out_dir, [j.pair_id for j in run.jobs])
    ctx = StageContext(out=str(out_dir.resolve()), options=opts.analysis, model=entry, resume=opts.resume)
    bar = _Bar(len(run.jobs), opts.progress)
    try:
        stats = None
        if use_dask:
            from .cluster import run_dask

            outcomes = run_dask(
                run.jobs,
                ctx,
                scheduler=opts.dask_scheduler,
                local_workers=opts.dask_local,
                model_name=opts.model,
                device=device,
                batch_size=opts.batch_size,
                on_outcome=bar,
            )
        else:
            workers = opts.workers if opts.workers is not None else (os.cpu_count() or 1)
            outcomes, stats = run_pipeline(
                run.jobs,
                ctx,
                model=model,
                workers=workers,
                pairs_per_call=opts.pairs_per_call,
                batch_size=opts.batch_size,
                on_outcome=bar,
            )
    finally:
        bar.close()
        # Rebuilt from the pair folders even when the run stops early, so it is never stale or partial.
        results = write_results(out_dir, full)
    summary = BatchSummary(out_dir, results, tuple(outcomes), time.perf_counter() - t0, stats)
    logger.info("batch: %d done, %d skipped, %d failed in %.1f s", summary.count("done"), summary.count("skipped"), summary.count("failed"), summary.wall_s)
    return summary


class _Bar:
    """tqdm progress on stderr (pairs done, pairs/s, ETA), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="pair", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, outcome: PairOutcome) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if outcome.status == "failed":
                self._bar.set_postfix_str(f"failed: {outcome.pair_id}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


__all__ = [
    "BATCH_JSON",
    "RESULTS_CSV",
    "BatchOptions",
    "BatchSummary",
    "DeviceStats",
    "Manifest",
    "PairJob",
    "PairOutcome",
    "check_pair_id",
    "read_manifest",
    "run_batch",
]
