"""Training of the segmentation network: ``imgtool train CONFIG``.

The config file (JSON, see ``models/*.train.json``) fixes everything: seed,
steps, batch, crop, optimiser, architecture, working resolution, augmentations,
the phantom seeds, and for every real set the class it supervises and its FIXED
split into training and held-out files (by file id). Only training files are ever
read during training.

Losses are masked by what a sample knows:

* phantoms know every class: cross-entropy over the four classes plus a soft Dice;
* a lesion set knows only lesion-versus-rest, a hair set only hair-versus-rest:
  binary cross-entropy on the model's probability of that class (the sum of the
  other classes' probabilities is "not that class") plus a soft Dice on it.
  Such a set says nothing about skin versus background, nor about the other class.

Training is seeded (each step's batch comes from a generator seeded by
``(seed, step)``, so a resumed run sees the same batches as an uninterrupted
one), logged (to the ``imgtool`` logger and as JSON lines in ``train_log.jsonl``)
and resumable from ``checkpoint.pt`` (tensors and plain numbers only, read with
``weights_only=True``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..datasets import MaskConvention, detect_convention, find_pairs, read_binary_mask
from ..errors import InputError, UsageError
from ..io import read_image, write_bytes, write_json, write_png
from ..labels import HAIR, LESION, NUM_CLASSES
from .augment import IGNORE, AugmentOptions, augment_sample
from .inference import autocast_dtype, to_working
from .model import InputSpec, load_network, resolve_device, save_model
from .network import NetworkConfig, SmallUNet

logger = logging.getLogger(__name__)

#: Supervision kinds: every class (phantoms), or one class against the rest.
KIND_ALL: int = -1
CLASS_OF_SET: dict[str, int] = {"lesion": LESION, "hair": HAIR}
CHECKPOINT: str = "checkpoint.pt"
LOG_FILE: str = "train_log.jsonl"


@dataclass(frozen=True)
class RealSetConfig:
    """A real set of photos with one-class masks and its fixed split.

    Attributes
    ----------
    name : str
        Folder name under the data root.
    cls : str
        ``"lesion"`` or ``"hair"``: the only class the masks say anything about.
    train, test : tuple of str
        File ids used for training and held back for reporting.
    weight : float
        Relative share of this set among the real samples of a batch.
    """

    name: str
    cls: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", tuple(self.train))
        object.__setattr__(self, "test", tuple(self.test))
        if self.cls not in CLASS_OF_SET:
            raise ValueError(f"real set {self.name}: class must be lesion or hair, got {self.cls!r}")
        overlap = set(self.train) & set(self.test)
        if overlap:
            raise ValueError(f"real set {self.name}: ids in both train and test: {sorted(overlap)[:5]}")


@dataclass(frozen=True)
class PhantomConfig:
    """Phantoms rendered by :func:`imgtool.synth.render_photo` for training.

    Phantom ``seed_start + i`` is rendered at ``sizes[i % len(sizes)]`` and then
    brought to the working resolution exactly as inference brings a photo there
    (:func:`~imgtool.segmentation.inference.to_working`), so the network trains on
    structures at the scale it will see them.

    Attributes
    ----------
    count : int
        Number of distinct phantoms (seeds ``seed_start .. seed_start + count - 1``).
    sizes : tuple of (int, int)
        ``(width, height)`` sizes they are rendered at, in turn.
    seed_start : int
        First seed.
    texture_sets : tuple of str
        Real sets whose TRAINING photos lend skin and hair textures.
    workers : int
        Processes that render in parallel (0: one per CPU core).
    cache_dir : str or None
        Folder of the phantom cache (relative to the config file's folder when
        relative); None renders into memory on every run. Cached phantoms are
        reused by every run whose recipe (sizes, working resolution, texture files,
        generator source) is the same; see :func:`phantom_cache_dir`.
    """

    count: int = 400
    sizes: tuple[tuple[int, int], ...] = ((512, 384),)
    seed_start: int = 1_000_000
    texture_sets: tuple[str, ...] = ()
    workers: int = 0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        sizes = tuple(tuple(int(v) for v in wh) for wh in self.sizes)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "texture_sets", tuple(self.texture_sets))
        if self.count < 1:
            raise ValueError(f"phantom count must be positive, got {self.count}")
        if not sizes or any(len(wh) != 2 or min(wh) < 64 for wh in sizes):
            raise ValueError(f"phantom sizes must be (width, height) pairs of at least 64 px, got {self.sizes}")
        if self.workers < 0:
            raise ValueError(f"phantom workers must be >= 0, got {self.workers}")

    def size_of(self, seed: int) -> tuple[int, int]:
        """``(width, height)`` that phantom ``seed`` is rendered at."""
        return self.sizes[(seed - self.seed_start) % len(self.sizes)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sizes": [list(wh) for wh in self.sizes],
            "seed_start": self.seed_start,
            "texture_sets": list(self.texture_sets),
            "workers": self.workers,
            "cache_dir": self.cache_dir,
        }


def _resolve_config_path(config_dir: str | None, path: str | os.PathLike) -> Path:
    """A path as a config file writes it: relative to the file's folder when relative."""
    p = Path(path)
    if p.is_absolute() or config_dir is None:
        return p
    return (Path(config_dir) / p).resolve()


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (the JSON config file, parsed).

    Attributes
    ----------
    name : str
        Model name (output files ``<name>.safetensors`` and ``<name>.json``).
    seed : int
        Seed of the weights' initialisation and of every batch.
    steps, batch_size, crop_size : int
        Optimiser steps, samples per step, square crop side (working-resolution pixels).
    lr, weight_decay : float
        AdamW peak learning rate (one-cycle schedule) and weight decay.
    phantom_share : float
        Share of each batch drawn from phantoms; the rest from the real sets.
    checkpoint_every, log_every : int
        Steps between checkpoints and between log lines.
    threads : int
        Torch CPU threads (0: torch's default).
    network : NetworkConfig
    input : InputSpec
    augment : AugmentOptions
    phantoms : PhantomConfig or None
    real_sets : tuple of RealSetConfig
    data_root : str
        Folder of the real sets, as written in the config; a relative path is
        relative to ``config_dir`` (see :meth:`data_dir`).
    init_weights : str or None
        A model (``.safetensors``, relative to ``config_dir`` when relative) whose
        weights start the run instead of a random initialisation: a longer run in
        stages, or fine-tuning. Its name and sha256 are recorded in the card.
    config_dir : str or None
        Folder of the config file (set by :func:`load_train_config`; not recorded).
    """

    name: str
    seed: int = 0
    steps: int = 3000
    batch_size: int = 8
    crop_size: int = 288
    lr: float = 3e-3
    weight_decay: float = 1e-4
    phantom_share: float = 0.5
    checkpoint_every: int = 100
    log_every: int = 10
    threads: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    input: InputSpec = field(default_factory=InputSpec)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    phantoms: PhantomConfig | None = None
    real_sets: tuple[RealSetConfig, ...] = ()
    data_root: str = "../../shared/data"
    init_weights: str | None = None
    config_dir: str | None = field(default=None, compare=False)

    def resolve(self, path: str | os.PathLike) -> Path:
        """``path`` as written in the config: relative to ``config_dir`` when relative."""
        return _resolve_config_path(self.config_dir, path)

    def data_dir(self) -> Path:
        """The folder of the real sets: ``data_root``, relative to ``config_dir`` when relative."""
        return self.resolve(self.data_root)

    def __post_init__(self) -> None:
        object.__setattr__(self, "real_sets", tuple(self.real_sets))
        if self.steps < 1 or self.batch_size < 1 or self.crop_size < 32:
            raise ValueError("steps and batch_size must be positive and crop_size at least 32")
        if not 0.0 <= self.phantom_share <= 1.0:
            raise ValueError(f"phantom_share must be in [0, 1], got {self.phantom_share}")
        if self.phantom_share > 0 and self.phantoms is None:
            raise ValueError("phantom_share > 0 needs a phantoms section")
        if self.phantom_share < 1 and not self.real_sets:
            raise ValueError("phantom_share < 1 needs at least one real set")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "name",
                "seed",
                "steps",
                "batch_size",
                "crop_size",
                "lr",
                "weight_decay",
                "phantom_share",
                "checkpoint_every",
                "log_every",
                "threads",
                "data_root",
                "init_weights",
            )
        }
        d["network"] = self.network.to_dict()
        spec = self.input.to_dict()
        d["input"] = {k: spec[k] for k in ("working_long_side", "tile_size", "overlap", "mean", "std")}
        d["augment"] = self.augment.to_dict()
        d["phantoms"] = None if self.phantoms is None else self.phantoms.to_dict()
        d["real_sets"] = [
            {"name": s.name, "cls": s.cls, "weight": s.weight, "train": list(s.train), "test": list(s.test)} for s in self.real_sets
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d.pop("comment", None)
        try:
            if "network" in d:
                d["network"] = NetworkConfig.from_dict(d["network"])
            if "input" in d:
                d["input"] = InputSpec(**d["input"])
            if "augment" in d:
                d["augment"] = AugmentOptions.from_dict(d["augment"])
            if d.get("phantoms") is not None:
                d["phantoms"] = PhantomConfig(**d["phantoms"])
            d["real_sets"] = tuple(RealSetConfig(**s) for s in d.get("real_sets", ()))
            unknown = set(d) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad training config: {exc}") from None


def _read_config_json(p: Path) -> Any:
    """The parsed JSON of a training config file (InputError when missing or not JSON)."""
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"training config {p} not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"training config {p} is not readable JSON: {exc}") from None


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """Read a training config; a relative ``data_root`` is relative to the file's folder.

    Raises
    ------
    InputError
        The file is missing or not JSON.
    UsageError
        The config is not valid.
    """
    p = Path(path)
    raw = _read_config_json(p)
    return replace(TrainConfig.from_dict(raw), config_dir=str(p.resolve().parent))


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Sample:
    """A training photo at working resolution and its target.

    ``target`` holds class indices for phantoms (kind :data:`KIND_ALL`), or 0/1
    (not / is the class) for a one-class set whose class index is ``kind``.
    """

    image: np.ndarray
    target: np.ndarray
    kind: int


def real_set_files(cfg: TrainConfig, name: str, conv: MaskConvention | None = None) -> dict[str, tuple[Path, Path]]:
    """``{id: (photo, mask)}`` of a real set under ``cfg.data_dir()`` (conventions of :mod:`imgtool.datasets`; detected when not given)."""
    folder = cfg.data_dir() / name
    conv = conv or detect_convention(folder)
    return {pid: (img, mask) for pid, img, mask in find_pairs(folder, conv)}


def load_real_samples(cfg: TrainConfig, split: str = "train") -> dict[str, list[Sample]]:
    """The training (or held-out) photos of each real set, at working resolution.

    Raises
    ------
    InputError
        A set folder or a listed id is missing.
    """
    out: dict[str, list[Sample]] = {}
    for s in cfg.real_sets:
        conv = detect_convention(cfg.data_dir() / s.name)
        files = real_set_files(cfg, s.name, conv)
        ids = s.train if split == "train" else s.test
        missing = [i for i in ids if i not in files]
        if missing:
            raise InputError(f"real set {s.name}: ids not found: {', '.join(missing[:5])}")
        samples = []
        for i in ids:
            img, _ = read_image(files[i][0])
            mask = read_binary_mask(files[i][1], conv.threshold, img.shape[:2], conv.mask_scale)
            samples.append(_to_sample(img, mask.astype(np.uint8), CLASS_OF_SET[s.cls], cfg.input.working_long_side))
        out[s.name] = samples
    return out


def _to_sample(image: np.ndarray, target: np.ndarray, kind: int, long_side: int) -> Sample:
    work = to_working(image, long_side)
    if work.shape != image.shape:
        target = cv2.resize(target, (work.shape[1], work.shape[0]), interpolation=cv2.INTER_NEAREST)
    return Sample(work, target, kind)


def _generator_digest() -> str:
    """SHA-256 of the phantom generator's source files: a cache made by other code is not reused."""
    from .. import synth

    h = hashlib.sha256()
    for f in sorted(Path(synth.__file__).parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def phantom_recipe(cfg: PhantomConfig, long_side: int, textures: Sequence[Path]) -> dict[str, Any]:
    """What a cached phantom depends on, besides its seed (JSON-ready)."""
    return {
        "sizes": [list(wh) for wh in cfg.sizes],
        "working_long_side": int(long_side),
        "texture_files": [Path(t).name for t in textures],
        "generator_sha256": _generator_digest(),
    }


def phantom_cache_dir(root: Path, recipe: dict[str, Any]) -> Path:
    """``root/<first 16 hex digits of the recipe's SHA-256>``: one folder per recipe."""
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return root / key


def _render_one(job: tuple[int, tuple[int, int], int], options: Any = None) -> tuple[int, np.ndarray, np.ndarray]:
    """Render phantom ``seed`` at ``size`` and bring it to the working resolution."""
    from .. import synth

    seed, size, long_side = job
    img, labels = synth.render_photo(seed, size=size, options=options)
    sample = _to_sample(img, labels, KIND_ALL, long_side)
    return seed, sample.image, sample.target


def render_phantoms(
    cfg: PhantomConfig,
    long_side: int,
    textures: Sequence[Path] = (),
    *,
    cache: Path | None = None,
) -> list[Sample]:
    """The training phantoms (seeds ``seed_start ..``) at the working resolution.

    Rendered with :func:`imgtool.synth.render_photo` by ``cfg.workers`` processes,
    each at its size from ``cfg.sizes`` and downscaled as inference downscales
    photos. With ``cache``, phantoms found there (under the folder of this recipe,
    :func:`phantom_cache_dir`) are read instead of rendered, and new ones are
    written there (PNG), so later runs and longer runs reuse them.

    Parameters
    ----------
    cfg : PhantomConfig
        Seeds, sizes, workers.
    long_side : int
        Working resolution (long side).
    textures : sequence of Path
        Photo files lending skin and hair textures (training files only).
    cache : Path, optional
        Root folder of the phantom cache.

    Returns
    -------
    list of Sample
        In seed order.

    Raises
    ------
    UsageError
        The phantom generator is not installed.
    """
    try:
        from .. import synth
    except ImportError:
        raise UsageError("training on phantoms needs imgtool.synth (the phantom generator), which is not installed") from None
    t0 = time.perf_counter()
    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.count))
    folder = None
    found: dict[int, Sample] = {}
    if cache is not None:
        recipe = phantom_recipe(cfg, long_side, textures)
        folder = phantom_cache_dir(cache, recipe)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "recipe.json", recipe)
        for seed in seeds:
            img_path, lab_path = folder / f"{seed}.png", folder / f"{seed}_labels.png"
            if img_path.is_file() and lab_path.is_file():
                img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
                lab = cv2.imread(str(lab_path), cv2.IMREAD_UNCHANGED)
                if img is not None and lab is not None:
                    found[seed] = Sample(np.ascontiguousarray(img[..., ::-1]), lab, KIND_ALL)
    todo = [(s, cfg.size_of(s), int(long_side)) for s in seeds if s not in found]
    if todo:
        options = synth.SynthOptions(textures=synth.load_texture_bank(list(textures))) if textures else None
        workers = min(cfg.workers or (os.cpu_count() or 1), len(todo))
        render = functools.partial(_render_one, options=options)
        if workers > 1:
            # One OpenCV thread per worker: the workers are the parallelism.
            with multiprocessing.get_context("spawn").Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
                _collect(pool.imap_unordered(render, todo, chunksize=8), found, folder)
        else:
            _collect(map(render, todo), found, folder)
    logger.info(
        "phantoms: %d read from the cache and %d rendered in %.1f s%s",
        cfg.count - len(todo),
        len(todo),
        time.perf_counter() - t0,
        f" (cache {folder})" if folder is not None else "",
    )
    return [found[s] for s in seeds]


def _collect(done: Iterable[tuple[int, np.ndarray, np.ndarray]], found: dict[int, Sample], folder: Path | None) -> None:
    """Store rendered phantoms in ``found`` and, with a cache folder, as PNG files there."""
    for seed, img, lab in done:
        found[seed] = Sample(img, lab, KIND_ALL)
        if folder is not None:
            write_png(folder / f"{seed}.png", img)
            write_png(folder / f"{seed}_labels.png", lab)


def _batches(
    start: int, end: int, cfg: TrainConfig, phantoms: Sequence[Sample], real: dict[str, list[Sample]], threads: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The batches of steps ``start .. end - 1`` in order, drawn ahead of the training loop.

    ``threads`` threads draw batches in the background; OpenCV and numpy release the
    GIL in the augmentations, so threads scale without copying the samples into other
    processes. Every batch depends only on its step, so the number of threads changes
    no result. Nothing past ``end`` is drawn.
    """
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future] = deque()
        nxt = start
        for _ in range(start, end):
            while nxt < end and len(pending) < 2 * threads:
                pending.append(pool.submit(make_batch, nxt, cfg, phantoms, real))
                nxt += 1
            yield pending.popleft().result()


def make_batch(
    step: int,
    cfg: TrainConfig,
    phantoms: Sequence[Sample],
    real: dict[str, list[Sample]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch of ``step``: normalised crops, targets and supervision kinds.

    Seeded by ``(cfg.seed, step)``, so it does not depend on earlier steps.

    Returns
    -------
    ((B, 3, c, c) float32, (B, c, c) int64, (B,) int64) tensors
    """
    rng = np.random.default_rng([cfg.seed, step])
    names = [s.name for s in cfg.real_sets if real.get(s.name)]
    weights = np.array([s.weight for s in cfg.real_sets if real.get(s.name)], dtype=float)
    images, targets, kinds = [], [], []
    for _ in range(cfg.batch_size):
        if phantoms and (not names or rng.random() < cfg.phantom_share):
            sample = phantoms[int(rng.integers(len(phantoms)))]
        else:
            pool = real[names[int(rng.choice(len(names), p=weights / weights.sum()))]]
            sample = pool[int(rng.integers(len(pool)))]
        img, tgt = augment_sample(sample.image, sample.target, cfg.crop_size, rng, cfg.augment)
        images.append(img)
        targets.append(tgt)
        kinds.append(sample.kind)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg.input.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.input.std).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last), torch.from_numpy(np.stack(targets)).long(), torch.tensor(kinds)


# --------------------------------------------------------------------------- loss


def _soft_dice(prob: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``1 - Dice`` of a probability map against a 0/1 truth over valid pixels (one number)."""
    prob, truth = prob * valid, truth * valid
    inter = (prob * truth).sum()
    return 1.0 - (2.0 * inter + 1.0) / (prob.sum() + truth.sum() + 1.0)


def masked_loss(logits: torch.Tensor, target: torch.Tensor, kinds: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss, each sample supervising only the classes its set knows.

    Parameters
    ----------
    logits : (B, C, H, W) float tensor
        Network output.
    target : (B, H, W) int64 tensor
        Class indices for kind :data:`KIND_ALL`; 0/1 for a one-class sample;
        :data:`~imgtool.segmentation.augment.IGNORE` where unknown.
    kinds : (B,) int64 tensor
        :data:`KIND_ALL`, or the class index a one-class sample's 0/1 target is about.

    Returns
    -------
    (scalar tensor, dict)
        The loss, and its parts as floats (for logging).
    """
    logp = F.log_softmax(logits.float(), dim=1)
    parts: dict[str, torch.Tensor] = {}
    full = kinds == KIND_ALL
    if bool(full.any()):
        lp, t = logp[full], target[full]
        valid = (t != IGNORE).float()
        parts["ce_all"] = F.nll_loss(lp, t.clamp(max=NUM_CLASSES - 1) * (t != IGNORE), reduction="none").mul(valid).sum() / valid.sum().clamp(min=1)
        prob = lp.exp()
        dice = [_soft_dice(prob[:, c], (t == c).float(), valid) for c in range(logits.shape[1])]
        parts["dice_all"] = torch.stack(dice).mean()
    for cls in (LESION, HAIR):
        sel = kinds == cls
        if not bool(sel.any()):
            continue
        lp, t = logp[sel], target[sel]
        valid = (t != IGNORE).float()
        pos = (t == 1).float()
        log_p = lp[:, cls]
        log_not = torch.logsumexp(torch.cat([lp[:, :cls], lp[:, cls + 1 :]], dim=1), dim=1)
        bce = -(pos * log_p + (1 - pos) * log_not)
        name = "lesion" if cls == LESION else "hair"
        parts[f"bce_{name}"] = (bce * valid).sum() / valid.sum().clamp(min=1)
        parts[f"dice_{name}"] = _soft_dice(log_p.exp(), pos, valid)
    total = torch.stack(list(parts.values())).sum()
    return total, {k: float(v.detach()) for k, v in parts.items()}


# --------------------------------------------------------------------------- loop


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    weights : Path
        The ``.safetensors`` file (its card beside it).
    steps : int
        Steps done in total.
    first_loss, last_loss : float
        Mean loss over the first and the last logging windows of this run.
    """

    weights: Path
    steps: int
    first_loss: float
    last_loss: float

    def to_dict(self) -> dict[str, Any]:
        return {"weights": str(self.weights), "steps": self.steps, "first_loss": self.first_loss, "last_loss": self.last_loss}


def _save_checkpoint(path: Path, step: int, seconds: float, net: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, scaler: Any) -> None:
    import io

    buf = io.BytesIO()
    state = {
        "step": step,
        "seconds": seconds,
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
    }
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    device: str | torch.device = "auto",
    progress: Callable[[int, float], None] | None = None,
    loader_threads: int = 1,
    stop_after: int | None = None,
) -> TrainResult:
    """Train the network as ``cfg`` says and write ``<out_dir>/<name>.safetensors`` with its card.

    Parameters
    ----------
    cfg : TrainConfig
        The run's config (from :func:`load_train_config`).
    out_dir : path-like
        Folder for the checkpoint, the log and the final weights.
    resume : bool
        Continue from ``<out_dir>/checkpoint.pt`` when it exists.
    device : str or torch.device
        ``"auto"``, ``"cpu"`` or ``"cuda"``. On CUDA the network runs channels-last
        under autocast (bfloat16 where supported, else float16 with loss scaling).
    progress : callable, optional
        Called as ``progress(step, loss)`` after every step.
    loader_threads : int
        Threads that draw (augment) batches ahead of the training loop. Batches
        depend only on their step, so this changes the speed, never the result.
        A GPU needs many to be kept busy.
    stop_after : int, optional
        End the run after this step (a checkpoint is written there) and write the
        weights of that step, the schedule still spanning ``cfg.steps``: a run in
        parts under a time limit (``resume`` continues it), or weights taken before
        the end of the schedule. The card records the steps done.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Missing data.
    UsageError
        Phantoms asked for without the phantom generator, or an unknown device.
    """
    if stop_after is not None and not 0 < stop_after <= cfg.steps:
        raise UsageError(f"stop after must be a step from 1 to {cfg.steps}, got {stop_after}")
    if loader_threads < 1:
        raise UsageError(f"loader threads must be 1 or more, got {loader_threads}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = SmallUNet(cfg.network)
    init: dict[str, Any] | None = None
    if cfg.init_weights is not None:
        path = cfg.resolve(cfg.init_weights)
        parent, _, digest = load_network(path)
        try:
            net.load_state_dict(parent.state_dict(), strict=True)
        except RuntimeError:
            raise UsageError(f"init weights {cfg.init_weights} are of another architecture than the config's network") from None
        init = {"path": cfg.init_weights, "name": Path(path).stem, "sha256": digest}
        logger.info("starting from %s (%s)", cfg.init_weights, digest[:12])
    net = net.to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    amp = autocast_dtype(dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    start, seconds_before = 0, 0.0
    ckpt = out / CHECKPOINT
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state.get("scaler", {}))
        start, seconds_before = int(state["step"]), float(state.get("seconds", 0.0))
        logger.info("resumed from %s at step %d", ckpt, start)
    elif (out / LOG_FILE).exists():
        (out / LOG_FILE).unlink()

    real = load_real_samples(cfg, "train") if cfg.phantom_share < 1 else {}
    phantoms: list[Sample] = []
    t_render = time.perf_counter()
    if cfg.phantom_share > 0 and cfg.phantoms is not None:
        cache = None if cfg.phantoms.cache_dir is None else cfg.resolve(cfg.phantoms.cache_dir)
        phantoms = render_phantoms(cfg.phantoms, cfg.input.working_long_side, _texture_files(cfg), cache=cache)
    render_seconds = time.perf_counter() - t_render

    net.train()
    window: list[float] = []
    first = last = float("nan")
    t0 = time.perf_counter()
    with open(out / LOG_FILE, "a", encoding="utf-8") as log:
        end = cfg.steps if stop_after is None else stop_after
        for step, (x, t, kinds) in enumerate(_batches(start, end, cfg, phantoms, real, loader_threads), start):
            x, t, kinds = x.to(dev, non_blocking=True), t.to(dev, non_blocking=True), kinds.to(dev)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                logits = net(x)
            loss, parts = masked_loss(logits, t, kinds)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            value = float(loss.detach())
            window.append(value)
            if progress is not None:
                progress(step + 1, value)
            if (step + 1) % cfg.log_every == 0 or step + 1 == end:
                mean = float(np.mean(window))
                first = mean if np.isnan(first) else first
                last = mean
                elapsed = seconds_before + time.perf_counter() - t0
                rec = {"step": step + 1, "loss": round(mean, 5), "lr": sched.get_last_lr()[0], "seconds": round(elapsed, 1)}
                rec.update({k: round(v, 5) for k, v in parts.items()})
                log.write(json.dumps(rec) + "\n")
                log.flush()
                logger.info("step %d/%d loss %.4f", step + 1, cfg.steps, mean)
                window = []
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
                _save_checkpoint(ckpt, step + 1, seconds_before + time.perf_counter() - t0, net, opt, sched, scaler)

    net.eval()
    extra = {
        "training": {
            "config": cfg.to_dict(),
            "steps_done": max(start, end),
            "final_loss": last,
            "device": dev.type,
            "threads": torch.get_num_threads(),
            "loader_threads": loader_threads,
            "init_weights": init,
            "phantom_render_seconds": round(render_seconds, 1),
            "train_seconds": round(seconds_before + time.perf_counter() - t0, 1),
        }
    }
    save_model(net.cpu(), out / cfg.name, input_spec=cfg.input, extra=extra)
    return TrainResult(weights=out / f"{cfg.name}.safetensors", steps=max(start, end), first_loss=first, last_loss=last)


@dataclass(frozen=True)
class AverageConfig:
    """A training stage that averages the weights of finished runs (a "model soup").

    Fine-tunes of one model that pull in different directions (one towards the
    phantoms, one towards the real sets) can be averaged weight by weight into a model
    between them: Wortsman et al., "Robust fine-tuning of zero-shot models" (WiSE-FT,
    CVPR 2022) and "Model soups" (ICML 2022). It works for runs that share a starting
    point, so the parents must have the same architecture, input and real-set split.

    Attributes
    ----------
    name : str
        Model name (output files ``<name>.safetensors`` and ``<name>.json``).
    models : tuple of str
        The parents (``.safetensors``, relative to ``config_dir`` when relative), each
        loaded with its hash checked.
    weights : tuple of float
        Each parent's share, positive, summing to 1.
    config_dir : str or None
        Folder of the config file (set by :func:`load_average_config`; not recorded).
    """

    name: str
    models: tuple[str, ...]
    weights: tuple[float, ...]
    config_dir: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if len(self.models) < 2 or len(self.models) != len(self.weights):
            raise ValueError("average needs two or more models and one weight per model")
        if min(self.weights) <= 0 or abs(sum(self.weights) - 1.0) > 1e-6:
            raise ValueError(f"average weights must be positive and sum to 1, got {list(self.weights)}")

    def resolve(self, path: str | os.PathLike) -> Path:
        """``path`` as written in the config: relative to ``config_dir`` when relative."""
        return _resolve_config_path(self.config_dir, path)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "average": {"models": list(self.models), "weights": list(self.weights)}}


def load_average_config(path: str | os.PathLike) -> AverageConfig:
    """Read an averaging config: ``{"name": ..., "average": {"models": [...], "weights": [...]}}``.

    Raises
    ------
    InputError
        The file is missing or not JSON.
    UsageError
        The config is not valid.
    """
    raw = _read_config_json(Path(path))
    try:
        avg = raw["average"]
        unknown = (set(raw) - {"name", "average", "comment"}) | (set(avg) - {"models", "weights"})
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        return AverageConfig(name=raw["name"], models=avg["models"], weights=avg["weights"], config_dir=str(Path(path).resolve().parent))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"bad averaging config: {exc}") from None


def average_models(cfg: AverageConfig, out_dir: str | os.PathLike) -> TrainResult:
    """Average the parents' weights as ``cfg`` says and write ``<out_dir>/<name>.safetensors`` with its card.

    Every floating tensor (convolution weights, batch-norm affine terms and running
    statistics) is the weighted mean of the parents' (in float32); integer buffers
    (batch-norm step counters) are the first parent's. The card records the parents'
    names, sha256 and shares, and keeps their (shared) training config, whose real-set
    split still says which files no parent saw.

    Parameters
    ----------
    cfg : AverageConfig
        The stage's config (from :func:`load_average_config`).
    out_dir : path-like
        Folder for the weights and the card.

    Returns
    -------
    TrainResult
        ``steps`` is the sum of the parents' steps; the losses are NaN (nothing was trained).

    Raises
    ------
    ModelError
        A parent is missing or corrupt.
    UsageError
        The parents differ in architecture, input or real-set split.
    """
    parents = []
    for rel in cfg.models:
        net, card, digest = load_network(cfg.resolve(rel))
        parents.append((rel, net, card, digest))
    _, first_net, first_card, _ = parents[0]
    for rel, _, card, _ in parents[1:]:
        for key in ("architecture_args", "input"):
            if card[key] != first_card[key]:
                raise UsageError(f"cannot average {rel} with {cfg.models[0]}: their {key.replace('_', ' ')} differ")
        split = [(s["name"], s["train"], s["test"]) for s in card["training"]["config"]["real_sets"]]
        if split != [(s["name"], s["train"], s["test"]) for s in first_card["training"]["config"]["real_sets"]]:
            raise UsageError(f"cannot average {rel} with {cfg.models[0]}: their real-set splits differ (a held-out file of one could be a training file of the other)")
    states = [net.state_dict() for _, net, _, _ in parents]
    averaged = {}
    for key, ref in states[0].items():
        if ref.is_floating_point():
            averaged[key] = sum(w * st[key].float() for w, st in zip(cfg.weights, states))
        else:
            averaged[key] = ref.clone()
    first_net.load_state_dict(averaged, strict=True)
    first_net.eval()
    extra = {
        "training": {
            "config": first_card["training"]["config"],
            "average": {
                "rule": "weighted mean of every floating tensor (float32), integer buffers from the first parent",
                "parents": [
                    {"path": rel, "name": card["name"], "sha256": digest, "weight": w, "training": {k: v for k, v in card["training"].items() if k != "config"}}
                    for (rel, _, card, digest), w in zip(parents, cfg.weights)
                ],
            },
            "steps_done": sum(int(card["training"].get("steps_done") or 0) for _, _, card, _ in parents),
            "init_weights": None,
        }
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(first_net, out / cfg.name, input_spec=InputSpec.from_dict(first_card["input"]), extra=extra)
    return TrainResult(weights=out / f"{cfg.name}.safetensors", steps=extra["training"]["steps_done"], first_loss=float("nan"), last_loss=float("nan"))


def is_average_config(path: str | os.PathLike) -> bool:
    """Whether the config file at ``path`` describes an averaging stage (it has an ``average`` section)."""
    raw = _read_config_json(Path(path))
    return isinstance(raw, dict) and "average" in raw


def run_config(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    device: str | torch.device = "auto",
    loader_threads: int = 1,
    stop_after: int | None = None,
) -> TrainResult:
    """Run the stage a config file describes: :func:`train`, or :func:`average_models` for an averaging config.

    The options other than ``path`` and ``out_dir`` apply to training only; an
    averaging stage refuses ``resume`` and ``stop_after`` (it has no steps).

    Raises
    ------
    InputError, UsageError, ModelError
        As :func:`train` and :func:`average_models`.
    """
    if is_average_config(path):
        if resume or stop_after is not None:
            raise UsageError("an averaging config has no steps: --resume and --stop-after do not apply")
        avg = load_average_config(path)
        result = average_models(avg, out_dir)
        logger.info("averaged %s into %s", ", ".join(avg.models), result.weights)
        return result
    result = train(load_train_config(path), out_dir, resume=resume, device=device, loader_threads=loader_threads, stop_after=stop_after)
    logger.info("trained %s (loss %.4f -> %.4f)", result.weights, result.first_loss, result.last_loss)
    return result


def _texture_files(cfg: TrainConfig) -> list[Path]:
    """Training-split photos of the sets named as phantom texture sources."""
    if cfg.phantoms is None or not cfg.phantoms.texture_sets:
        return []
    files: list[Path] = []
    by_name = {s.name: s for s in cfg.real_sets}
    for name in cfg.phantoms.texture_sets:
        if name not in by_name:
            raise UsageError(f"phantom texture set {name!r} is not one of the real sets")
        pairs = real_set_files(cfg, name)
        files.extend(pairs[i][0] for i in by_name[name].train if i in pairs)
    return files
