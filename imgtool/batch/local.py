"""One machine: a producer/consumer pipeline around the device.

Worker processes (spawn context, each with a thread budget so the cores are not
oversubscribed) read, register, quantify and write pairs; this process holds the
model, loaded once, and segments the photos of every pair that is ready in one call,
so the device gets batches of several pairs' tiles while the workers prepare the
next ones. The number of pairs in flight is bounded, so memory does not grow with
the batch. ``workers=0`` runs every stage in this process (same code, no pool).
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from ..errors import ImgtoolError
from ..segmentation import SegmentationModel
from .manifest import PairJob
from .stages import PairOutcome, StageContext, StagedPair, device_stage, fail, finish_stage, load_stage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceStats:
    """How busy the device was.

    Attributes
    ----------
    busy_s : float
        Seconds spent in segmentation calls (model forward, tiling and upsampling).
    wall_s : float
        Wall time of the pipeline.
    calls : int
        Segmentation calls.
    photos : int
        Photos segmented.
    """

    busy_s: float
    wall_s: float
    calls: int
    photos: int

    @property
    def busy_fraction(self) -> float:
        """``busy_s / wall_s`` (0 for an empty run)."""
        return self.busy_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"busy_s": self.busy_s, "wall_s": self.wall_s, "calls": self.calls, "photos": self.photos, "busy_fraction": self.busy_fraction}


class InlineExecutor(Executor):
    """An executor that runs each call at once in this process (``workers=0``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(exc)
        return f


def init_worker(threads: int) -> None:
    """Limit a worker process's torch and OpenCV threads (called once per worker)."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def make_executor(workers: int) -> Executor:
    """``workers`` spawn-context processes with ``cores // workers`` threads each, or inline for 0."""
    if workers == 0:
        return InlineExecutor()
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker, initargs=(threads,))


def run_pipeline(
    jobs: Sequence[PairJob],
    ctx: StageContext,
    *,
    model: SegmentationModel | None,
    workers: int,
    pairs_per_call: int = 4,
    batch_size: int | None = None,
    on_outcome: Callable[[PairOutcome], None] | None = None,
) -> tuple[list[PairOutcome], DeviceStats]:
    """Run the pairs through the worker/device pipeline.

    Parameters
    ----------
    jobs : sequence of PairJob
        The pairs.
    ctx : StageContext
        Output folder, settings, model entry, resume.
    model : SegmentationModel or None
        The CNN, held by this process (None for the classical method, which segments in the workers).
    workers : int
        Worker processes (0: everything in this process).
    pairs_per_call : int
        Most pairs whose photos go to the device in one segmentation call.
    batch_size : int, optional
        Tiles per forward pass.
    on_outcome : callable, optional
        Called with each pair's outcome as it ends (progress).

    Returns
    -------
    outcomes : list of PairOutcome
        In the order the pairs ended.
    stats : DeviceStats
        Time the device was busy.
    """
    t0 = time.perf_counter()
    busy = 0.0
    calls = photos = 0
    outcomes: list[PairOutcome] = []
    # Bounded: pairs read but not written never exceed this, whatever the batch size.
    window = max(2, 2 * max(workers, 1) + pairs_per_call)
    todo = iter(jobs)
    loads: dict[Future, PairJob] = {}
    finishes: dict[Future, StagedPair] = {}
    ready: collections.deque[StagedPair] = collections.deque()

    def done(o: PairOutcome) -> None:
        outcomes.append(o)
        if on_outcome is not None:
            on_outcome(o)

    with make_executor(workers) as pool:

        def top_up() -> None:
            while len(loads) + len(ready) + len(finishes) < window:
                job = next(todo, None)
                if job is None:
                    return
                loads[_submit(pool, load_stage, job, ctx)] = job

        def submit_finish(staged: StagedPair, labels: Any) -> None:
            finishes[_submit(pool, finish_stage, staged, labels, ctx)] = staged

        top_up()
        while loads or finishes or ready:
            pending: Iterable[Future] = [*loads, *finishes]
            finished, _ = wait(pending, timeout=0 if ready else None, return_when=FIRST_COMPLETED) if (loads or finishes) else (set(), set())
            for f in finished:
                if f in loads:
                    job = loads.pop(f)
                    res = _result(f, job, ctx)
                    if isinstance(res, PairOutcome):
                        done(res)
                    elif res.labels is not None:
                        submit_finish(res, res.labels)
                    else:
                        ready.append(res)
                else:
                    staged = finishes.pop(f)
                    done(_result(f, staged.job, ctx, staged))
            if ready:
                # The device takes everything that is ready (up to pairs_per_call pairs):
                # full batches when the workers are ahead, no waiting when they are behind.
                group = [ready.popleft() for _ in range(min(pairs_per_call, len(ready)))]
                t = time.perf_counter()
                try:
                    labels = device_stage(group, model, ctx, batch_size)
                except Exception as exc:  # noqa: BLE001 - these pairs fail; the batch goes on
                    for s in group:
                        done(fail(s.job, ctx, f"segmentation failed: {exc}", s.started, s.fingerprint))
                    labels = []
                busy += time.perf_counter() - t
                calls += 1
                photos += 2 * len(group)
                for s, lab in zip(group, labels):
                    submit_finish(s, lab)
            top_up()
    return outcomes, DeviceStats(busy, time.perf_counter() - t0, calls, photos)


def _submit(pool: Executor, fn: Callable[..., Any], *args: Any) -> Future:
    try:
        return pool.submit(fn, *args)
    except BrokenProcessPool:
        raise ImgtoolError(
            "a worker process died (killed, or out of memory); finished pairs are kept: rerun with --resume, perhaps with fewer --workers"
        ) from None


def _result(f: Future, job: PairJob, ctx: StageContext, staged: StagedPair | None = None) -> Any:
    """A stage's result; a worker that died (killed, out of memory) fails its pair."""
    try:
        return f.result()
    except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool
        started = staged.started if staged is not None else time.perf_counter()
        return fail(job, ctx, f"worker failed: {type(exc).__name__}: {exc}", started, None if staged is None else staged.fingerprint)
