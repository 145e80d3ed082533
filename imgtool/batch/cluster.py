"""Many machines: pairs as Dask tasks (``dask[distributed]``, the optional extra ``dask``).

Each task runs every stage of one pair (:func:`imgtool.batch.stages.run_pair`) on a
worker and writes the pair's folder into the shared output folder, with the same
atomic folders and resume as the local path. The model is loaded once per worker by
a :class:`ModelPlugin` (a Dask WorkerPlugin registered under a name that carries the
model's hash and device). With a CUDA device every task asks for the Dask resource
``GPU: 1``, so only workers started with ``--resources GPU=1`` run them, one at a time.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Sequence

from ..errors import UsageError
from ..segmentation import SegmentationModel
from .manifest import PairJob
from .stages import PairOutcome, StageContext, fail, run_pair

try:  # distributed is optional: without it the plugin is a plain class and run_dask says what to install
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # pragma: no cover - exercised only without the extra
    _PluginBase = object

logger = logging.getLogger(__name__)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError("the Dask options need dask and distributed: pip install 'imgtool[dask]'") from None
    return distributed


class ModelPlugin(_PluginBase):  # type: ignore[misc,valid-type]
    """Loads the segmentation model once in every Dask worker (a ``distributed.WorkerPlugin``).

    Parameters
    ----------
    method : str
        Segmentation method (no model for ``"classical"``).
    model_name : str or None
        Model name or path (None: the shipped default); it must exist on every worker.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    threads : int or None
        Torch/OpenCV threads per worker (None: leave the worker's default).
    name : str
        The plugin's name on the workers; it carries the model's hash and device, so
        a batch with another model registers (and loads) its own.
    augment : bool
        Test-time augmentation (mirror images) in the workers' model.
    """

    def __init__(self, method: str, model_name: str | None, device: str, threads: int | None, name: str, augment: bool = False) -> None:
        self.method = method
        self.augment = augment
        self.model_name = model_name
        self.device = device
        self.threads = threads
        self.name = name
        self.model: SegmentationModel | None = None

    def setup(self, worker: Any) -> None:
        if self.threads is not None:
            from .local import init_worker

            init_worker(self.threads)
        if self.method != "classical":
            from ..segmentation import load_model

            self.model = load_model(self.model_name, device=self.device, augment=self.augment)
        logger.info("dask worker %s: model ready (%s)", getattr(worker, "address", "?"), self.name)

    def teardown(self, worker: Any) -> None:
        self.model = None


def _task(job: PairJob, ctx: StageContext, plugin_name: str, batch_size: int | None) -> PairOutcome:
    """One pair on a Dask worker, with the worker's model."""
    from distributed import get_worker

    plugin = get_worker().plugins[plugin_name]
    return run_pair(job, ctx, plugin.model, batch_size)


def run_dask(
    jobs: Sequence[PairJob],
    ctx: StageContext,
    *,
    scheduler: str | None,
    local_workers: int | None,
    model_name: str | None,
    device: str,
    batch_size: int | None = None,
    on_outcome: Callable[[PairOutcome], None] | None = None,
) -> list[PairOutcome]:
    """Run the pairs as Dask tasks, on a scheduler or on a LocalCluster.

    Parameters
    ----------
    jobs : sequence of PairJob
    ctx : StageContext
    scheduler : str or None
        Address of a running scheduler (``tcp://host:8786``).
    local_workers : int or None
        Start a LocalCluster of this many worker processes (one thread each) instead.
    model_name : str or None
        Model to load on each worker (None: the shipped default).
    device : str
        Device of each worker's model; ``cuda`` makes tasks ask for the resource ``GPU: 1``.
    batch_size : int, optional
        Tiles per forward pass.
    on_outcome : callable, optional
        Called with each pair's outcome as it ends.

    Returns
    -------
    list of PairOutcome

    Raises
    ------
    UsageError
        dask is not installed, or both or neither of ``scheduler`` and ``local_workers``.
    """
    distributed = _import_distributed()
    if (scheduler is None) == (local_workers is None):
        raise UsageError("give a Dask scheduler address or a number of local workers (one of them)")
    gpu = device.startswith("cuda")
    resources = {"GPU": 1} if gpu else None
    cluster = None
    if local_workers is not None:
        threads = max(1, (os.cpu_count() or 1) // local_workers)
        cluster = distributed.LocalCluster(
            n_workers=local_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources=resources,
        )
        address: Any = cluster
    else:
        threads = None
        address = scheduler
    aug = bool(ctx.options.augment)
    ident = "classical" if ctx.model.get("sha256") is None else f"{ctx.model['sha256'][:16]}-{device}{'-augment' if aug else ''}"
    plugin = ModelPlugin(ctx.options.method, model_name, device, threads, name=f"imgtool-model-{ident}", augment=aug)
    outcomes: list[PairOutcome] = []
    try:
        with distributed.Client(address) as client:
            _register(client, plugin)
            todo = iter(jobs)
            ac = distributed.as_completed()
            in_flight: dict[str, PairJob] = {}

            def submit_next() -> bool:
                job = next(todo, None)
                if job is None:
                    return False
                fut = client.submit(_task, job, ctx, plugin.name, batch_size, resources=resources, pure=False)
                in_flight[fut.key] = job
                ac.add(fut)
                return True

            def target() -> int:
                # Bounded: a few tasks per worker in flight (workers may join later, e.g. SLURM jobs starting).
                return 2 * max(1, len(client.nthreads())) + 2

            for _ in range(target()):
                submit_next()
            for fut in ac:
                job = in_flight.pop(fut.key)
                try:
                    o = fut.result()
                except Exception as exc:  # noqa: BLE001 - a lost worker fails its pair; the batch goes on
                    o = fail(job, ctx, f"dask task failed: {type(exc).__name__}: {exc}", time.perf_counter())
                outcomes.append(o)
                if on_outcome is not None:
                    on_outcome(o)
                fut.release()
                while submit_next() and len(in_flight) < target():
                    pass
    finally:
        if cluster is not None:
            cluster.close()
    return outcomes


def _register(client: Any, plugin: ModelPlugin) -> None:
    """Register the model plugin on every worker (and on workers that join later)."""
    if hasattr(client, "register_plugin"):
        client.register_plugin(plugin, name=plugin.name)
    else:  # distributed before 2023.9
        client.register_worker_plugin(plugin, name=plugin.name)
