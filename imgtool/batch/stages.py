"""The stages of one pair in a batch, shared by the local pipeline and the Dask path.

* :func:`load_stage` (CPU worker): fingerprint the inputs, skip a pair whose folder is
  complete and current (resume), read the photos and the ROI; with the classical
  method also segment them (no model needed);
* the device stage (the process that holds the model): :func:`imgtool.segmentation.segment_labels`
  on the photos of several pairs at once;
* :func:`finish_stage` (CPU worker): :func:`imgtool.pipeline.finish_pair` (register,
  warp, quantify) and the pair's folder, written atomically.

:func:`run_pair` chains the three for a process that does everything itself (a Dask
worker). Every failure a pair can cause ends as a ``failed`` folder with its reason;
the batch goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._version import __version__
from ..errors import ImgtoolError
from ..pipeline import AnalysisOptions, LoadedPair, finish_pair, load_pair
from ..report import metrics_row, write_analysis
from ..segmentation import SegmentationModel, segment_labels, segment_labels_with_evidence
from .manifest import PairJob
from .store import commit_pair, fingerprint, is_complete

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageContext:
    """What every stage of a batch needs (picklable: it travels to worker processes).

    Attributes
    ----------
    out : str
        The batch output folder.
    options : AnalysisOptions
        Batch-wide analysis settings (a row's pixel size and view override them).
    model : dict
        result.json's model entry of the run (name, sha256, device; classical: sha256 None).
    resume : bool
        Skip pairs whose folder is complete and has the same fingerprint.
    """

    out: str
    options: AnalysisOptions
    model: dict[str, Any]
    resume: bool = False


@dataclass(frozen=True)
class PairOutcome:
    """How one pair ended.

    Attributes
    ----------
    pair_id : str
    status : str
        ``"done"``, ``"skipped"`` (resume: already complete) or ``"failed"``.
    error : str or None
        The reason of a failure.
    seconds : float
        Wall time spent on the pair in this run.
    """

    pair_id: str
    status: str
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PairLabels(NamedTuple):
    """A pair's segmentation as it travels from the device stage to a CPU worker.

    Attributes
    ----------
    before, after : (H, W) uint8 ndarray
        The label maps.
    before_evidence, after_evidence : (h, w, 2) float32 ndarray or None
        The CNN's lesion and hair evidence at its working resolution (small), for reconciliation;
        None for the classical method.
    """

    before: np.ndarray
    after: np.ndarray
    before_evidence: np.ndarray | None = None
    after_evidence: np.ndarray | None = None


@dataclass(frozen=True)
class StagedPair:
    """A pair between stages: read (and, classical, segmented), waiting for the next stage."""

    job: PairJob
    options: AnalysisOptions
    fingerprint: dict[str, Any]
    loaded: LoadedPair = field(repr=False)
    started: float
    labels: PairLabels | None = field(default=None, repr=False)


def pair_options(job: PairJob, options: AnalysisOptions) -> AnalysisOptions:
    """The batch settings with the row's pixel size and view applied."""
    changes: dict[str, Any] = {}
    if job.pixel_size_mm is not None:
        changes["pixel_size_mm"] = job.pixel_size_mm
    if job.view is not None:
        changes["view"] = job.view
    return dataclasses.replace(options, **changes) if changes else options


def _record(job: PairJob, status: str, error: str | None, fp: dict[str, Any] | None, seconds: float, metrics: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "pair_id": job.pair_id,
        "status": status,
        "error": error,
        "seconds": round(seconds, 3),
        "manifest_line": job.line,
        "inputs": {"before": job.before, "after": job.after, "roi": job.roi},
        "fingerprint": fp,
        "metrics": metrics,
    }


def fail(job: PairJob, ctx: StageContext, error: str, started: float, fp: dict[str, Any] | None = None) -> PairOutcome:
    """Record a failed pair (a folder with only batch.json) and return its outcome."""
    seconds = time.perf_counter() - started
    logger.warning("pair %s (line %d) failed: %s", job.pair_id, job.line, error)
    commit_pair(Path(ctx.out), job.pair_id, _record(job, "failed", error, fp, seconds, None))
    return PairOutcome(job.pair_id, "failed", error, seconds)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ImgtoolError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    logger.debug("internal error:\n%s", "".join(traceback.format_exception(exc)))
    return f"internal error: {type(exc).__name__}: {exc}"


def load_stage(job: PairJob, ctx: StageContext) -> StagedPair | PairOutcome:
    """Fingerprint, resume check and reading of one pair (runs in a CPU worker).

    Parameters
    ----------
    job : PairJob
    ctx : StageContext

    Returns
    -------
    StagedPair or PairOutcome
        The read pair (segmented too with the classical method), or the outcome
        ``skipped`` (complete and current) or ``failed`` (unreadable input).
    """
    started = time.perf_counter()
    opts = pair_options(job, ctx.options)
    fp = None
    try:
        fp = fingerprint({"before": job.before, "after": job.after, "roi": job.roi}, opts.to_dict(), ctx.model, __version__)
        if ctx.resume and is_complete(Path(ctx.out), job.pair_id, fp["digest"]):
            return PairOutcome(job.pair_id, "skipped", None, time.perf_counter() - started)
        loaded = load_pair(job.before, job.after, roi=job.roi, options=opts)
        labels = None
        if opts.method == "classical":
            lb, la = segment_labels([loaded.before_image, loaded.after_image], method="classical")
            labels = PairLabels(lb, la)
    except Exception as exc:  # noqa: BLE001 - a bad pair fails alone; the batch goes on
        return fail(job, ctx, _describe(exc), started, fp)
    return StagedPair(job, opts, fp, loaded, started, labels)


def finish_stage(staged: StagedPair, labels: PairLabels, ctx: StageContext) -> PairOutcome:
    """Register, quantify and write one segmented pair (runs in a CPU worker).

    Parameters
    ----------
    staged : StagedPair
        From :func:`load_stage`.
    labels : PairLabels
        BEFORE's and AFTER's label maps (and the CNN's lesion and hair evidence).
    ctx : StageContext

    Returns
    -------
    PairOutcome
        ``done``, or ``failed`` when the analysis raised or the registration failed
        (then the folder still holds the per-photo results, and the reason).
    """
    job = staged.job
    try:
        result = finish_pair(
            staged.loaded, labels.before, labels.after, options=staged.options, model=ctx.model, evidence=(labels.before_evidence, labels.after_evidence)
        )
        row = metrics_row(result)
        reg = result.registration
        error = None if reg.aligned else f"registration failed ({reg.reason})"
        status = "done" if error is None else "failed"

        def write(folder: Path) -> list[str]:
            return sorted(write_analysis(result, folder))

        seconds = time.perf_counter() - staged.started
        commit_pair(Path(ctx.out), job.pair_id, _record(job, status, error, staged.fingerprint, seconds, row), write)
    except Exception as exc:  # noqa: BLE001 - a bad pair fails alone; the batch goes on
        return fail(job, ctx, _describe(exc), staged.started, staged.fingerprint)
    if error is not None:
        logger.warning("pair %s (line %d): %s", job.pair_id, job.line, error)
    return PairOutcome(job.pair_id, status, error, seconds)


def device_stage(staged: list[StagedPair], model: SegmentationModel | None, ctx: StageContext, batch_size: int | None) -> list[PairLabels]:
    """Label maps of several pairs' photos in one call (the process that holds the model).

    Parameters
    ----------
    staged : list of StagedPair
        Pairs from :func:`load_stage` without labels.
    model : SegmentationModel or None
        The CNN (None for the classical method).
    ctx : StageContext
    batch_size : int or None
        Tiles per forward pass.

    Returns
    -------
    list of PairLabels
        One per pair, in order.
    """
    images = [img for s in staged for img in (s.loaded.before_image, s.loaded.after_image)]
    labels, evidence = segment_labels_with_evidence(images, method=ctx.options.method, model=model, batch_size=batch_size)
    return [PairLabels(labels[2 * i], labels[2 * i + 1], evidence[2 * i], evidence[2 * i + 1]) for i in range(len(staged))]


def run_pair(job: PairJob, ctx: StageContext, model: SegmentationModel | None, batch_size: int | None = None) -> PairOutcome:
    """All stages of one pair in this process (what a Dask task runs).

    Parameters
    ----------
    job : PairJob
    ctx : StageContext
    model : SegmentationModel or None
        The CNN, loaded once per process (None for the classical method).
    batch_size : int, optional
        Tiles per forward pass.

    Returns
    -------
    PairOutcome
    """
    staged = load_stage(job, ctx)
    if isinstance(staged, PairOutcome):
        return staged
    labels = staged.labels
    if labels is None:
        try:
            labels = device_stage([staged], model, ctx, batch_size)[0]
        except Exception as exc:  # noqa: BLE001 - a bad pair fails alone
            return fail(job, ctx, _describe(exc), staged.started, staged.fingerprint)
    return finish_stage(staged, labels, ctx)


__all__ = ["PairLabels", "PairOutcome", "StageContext", "StagedPair", "device_stage", "fail", "finish_stage", "load_stage", "pair_options", "run_pair"]
