"""Tiled, batched, device-agnostic inference of the segmentation network.

For each photo (numpy in, numpy out):

1. downscale to the model's working resolution (area averaging, on the CPU, from
   the uint8 photo: no full-resolution float copy is ever made);
2. normalise on the device and cut into overlapping tiles (:mod:`.tiling`);
3. run tiles of all photos through the network in batches, under
   ``torch.inference_mode``, channels-last, and autocast (bfloat16 where the GPU
   supports it, else float16) on CUDA; on a CUDA out-of-memory error the batch is
   halved and retried rather than failing;
4. blend the tiles' logits with tapered weights (no seams);
5. bilinearly upsample the working-resolution logits to the photo's size and take
   the arg-max, in strips of rows, so a 24-megapixel photo needs only one strip's
   worth of full-resolution class scores at a time.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch

from ..errors import ModelError
from ..labels import HAIR, LESION
from .model import InputSpec, SegmentationModel
from .tiling import Tile, blend_tiles, make_tiles

logger = logging.getLogger(__name__)

#: Tiles per batch by default: on the CPU batching buys nothing, on a GPU it does.
DEFAULT_BATCH_CPU: int = 1
DEFAULT_BATCH_CUDA: int = 16
#: Rows of the full-resolution output computed at once.
STRIP_ROWS: int = 256


def working_size(shape: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``(h, w)`` of a photo of ``shape`` at the working resolution (downscale only)."""
    h, w = int(shape[0]), int(shape[1])
    scale = min(1.0, long_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def to_working(image: np.ndarray, long_side: int) -> np.ndarray:
    """Downscale an ``(H, W, 3) uint8`` photo so its long side is at most ``long_side``."""
    h, w = working_size(image.shape[:2], long_side)
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def normalise(image: np.ndarray, spec: InputSpec, device: torch.device) -> torch.Tensor:
    """``(H, W, 3) uint8`` RGB to a normalised ``(3, H, W) float32`` tensor on ``device``."""
    t = torch.from_numpy(np.require(image, requirements=["C", "W"])).to(device).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(spec.mean, device=device).view(3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(3, 1, 1)
    return t.sub_(mean).div_(std)


def _interp_index(n_out: int, n_in: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of 1-D linear resizing as ``F.interpolate(align_corners=False)`` does it."""
    src = (torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    src = src.clamp_(min=0.0)
    i0 = src.floor().long().clamp_(max=n_in - 1)
    i1 = (i0 + 1).clamp_(max=n_in - 1)
    return i0, i1, (src - i0).float()


def upsample_argmax(logits: torch.Tensor, shape: tuple[int, int], strip_rows: int = STRIP_ROWS) -> np.ndarray:
    """Arg-max of bilinearly upsampled class scores, computed in strips of rows.

    Equals ``F.interpolate(logits[None], shape, mode="bilinear").argmax(1)`` up to
    float rounding, but holds only ``C x strip_rows x W`` upsampled values at once.
    On the CPU the strips are resampled with OpenCV (``cv2.warpAffine``, about ten
    times faster there than torch's resizing); on a GPU with torch.

    Parameters
    ----------
    logits : (C, h, w) float tensor
        Class scores at the working resolution.
    shape : (int, int)
        ``(H, W)`` of the output.
    strip_rows : int
        Output rows per strip.

    Returns
    -------
    (H, W) uint8 ndarray
        Class index per pixel.
    """
    if logits.device.type == "cpu":
        return upsample_argmax_cv2(logits.float().permute(1, 2, 0).contiguous().numpy(), shape, strip_rows)
    return upsample_argmax_torch(logits, shape, strip_rows)


def upsample_argmax_torch(logits: torch.Tensor, shape: tuple[int, int], strip_rows: int = STRIP_ROWS) -> np.ndarray:
    """:func:`upsample_argmax` with torch gathers, on any device (fast on a GPU)."""
    c, h, w = logits.shape
    out_h, out_w = int(shape[0]), int(shape[1])
    dev = logits.device
    logits = logits.float()
    x0, x1, wx = _interp_index(out_w, w, dev)
    y0, y1, wy = _interp_index(out_h, h, dev)
    labels = np.empty((out_h, out_w), dtype=np.uint8)
    for r0 in range(0, out_h, strip_rows):
        r1 = min(out_h, r0 + strip_rows)
        a, b, t = y0[r0:r1], y1[r0:r1], wy[r0:r1].view(1, -1, 1)
        rows = torch.lerp(logits[:, a], logits[:, b], t)  # (C, S, w)
        strip = torch.lerp(rows[:, :, x0], rows[:, :, x1], wx)  # (C, S, W)
        labels[r0:r1] = strip.argmax(0).to(torch.uint8).cpu().numpy()
    return labels


def upsample_argmax_cv2(scores: np.ndarray, shape: tuple[int, int], strip_rows: int = STRIP_ROWS) -> np.ndarray:
    """:func:`upsample_argmax` on the CPU with OpenCV; ``scores`` is ``(h, w, C) float32``."""
    h, w, c = scores.shape
    if c > 4:  # cv2.warpAffine takes at most 4 channels
        raise ValueError(f"at most 4 classes are supported on this path, got {c}")
    out_h, out_w = int(shape[0]), int(shape[1])
    sx, sy = w / out_w, h / out_h
    labels = np.empty((out_h, out_w), dtype=np.uint8)
    for r0 in range(0, out_h, strip_rows):
        r1 = min(out_h, r0 + strip_rows)
        # Source rows this strip reads (clamped as torch clamps them), plus one below.
        a = max(0, int(np.floor((r0 + 0.5) * sy - 0.5)))
        b = min(h, int(np.floor((r1 - 0.5) * sy - 0.5)) + 2)
        # Output pixel (x, y) reads source ((x + 0.5) sx - 0.5, (y + r0 + 0.5) sy - 0.5 - a).
        m = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, (r0 + 0.5) * sy - 0.5 - a]], dtype=np.float64)
        strip = cv2.warpAffine(
            scores[a:b], m, (out_w, r1 - r0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        labels[r0:r1] = strip.reshape(r1 - r0, out_w, c).argmax(-1)
    return labels


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a (CUDA) out-of-memory error."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``device``: bfloat16 or float16 on CUDA, None (float32) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class _Job:
    """Tiles of one photo on their way through the network."""

    shape: tuple[int, int]
    working: torch.Tensor
    tiles: list[Tile]
    outputs: list[torch.Tensor | None]


def run_batches(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: Sequence[torch.Tensor],
    batch_size: int,
    device: torch.device,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Run same-shape ``(C, h, w)`` inputs through ``forward`` in batches, halving the batch on out-of-memory.

    Parameters
    ----------
    forward : callable
        ``(B, C, h, w) -> (B, K, h, w)``.
    inputs : sequence of (C, h, w) tensor
        All of one shape.
    batch_size : int
        Starting batch size.
    device : torch.device
        Where ``forward`` runs.

    Yields
    ------
    (int, (K, h, w) float32 tensor)
        Index into ``inputs`` and its output, in order.

    Raises
    ------
    ModelError
        Out of memory with a batch of one.
    """
    i = 0
    bs = max(1, int(batch_size))
    while i < len(inputs):
        chunk = inputs[i : i + bs]
        try:
            x = torch.stack(list(chunk)).contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                y = forward(x)
            y = y.float()
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if bs == 1:
                raise ModelError(f"out of memory on {device} even with one tile per batch; try --device cpu or a smaller tile size") from None
            bs = max(1, bs // 2)
            logger.warning("out of memory on %s; retrying with batches of %d tiles", device, bs)
            continue
        for j in range(y.shape[0]):
            yield i + j, y[j]
        i += len(chunk)


def mirror_averaged(net: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net`` with test-time augmentation: the mean class probabilities of a batch and its mirror images.

    Parameters
    ----------
    net : callable
        ``(B, C, h, w) -> (B, K, h, w)`` logits.

    Returns
    -------
    callable
        ``(B, C, h, w) -> (B, K, h, w)`` log of the probabilities averaged over the
        input, its left-right, up-down and point mirror images (each mapped back).
        The four run as one batch of ``4 B``, so a GPU out-of-memory error still
        halves the caller's batch.
    """
    flips: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))

    def forward(x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        stacked = torch.cat([x.flip(d) if d else x for d in flips]).contiguous(memory_format=torch.channels_last)
        prob = net(stacked).float().softmax(1)
        mean = sum((prob[i * b : (i + 1) * b].flip(d) if d else prob[i * b : (i + 1) * b]) for i, d in enumerate(flips))
        # Log-probabilities: the tiles are blended and arg-maxed like logits.
        return (mean / len(flips)).clamp_min_(1e-6).log_()

    return forward


def predict_logits(
    images: Sequence[np.ndarray],
    model: SegmentationModel,
    *,
    batch_size: int | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Working-resolution logits of each photo, tiled and batched across photos.

    Parameters
    ----------
    images : sequence of (H, W, 3) uint8 ndarray
        RGB photos of any sizes.
    model : SegmentationModel
        The loaded model; with ``model.augment`` each tile's class probabilities are
        averaged over its mirror images (:func:`mirror_averaged`).
    batch_size : int, optional
        Tiles per forward pass (default 1 on the CPU, 16 on CUDA).
    tile_size, overlap : int, optional
        Tiling at the working resolution (default: the model card's).

    Yields
    ------
    (int, (C, h, w) float32 tensor)
        Photo index and its blended logits (log-probabilities with ``augment``) at
        the working resolution, in photo order.
    """
    spec = model.input_spec
    tile = int(tile_size or spec.tile_size)
    ov = int(spec.overlap if overlap is None else overlap)
    dev = model.device
    bs = batch_size or (DEFAULT_BATCH_CUDA if dev.type == "cuda" else DEFAULT_BATCH_CPU)
    net = mirror_averaged(model.network) if model.augment else model.network

    jobs: list[_Job] = []
    for img in images:
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {img.shape} and dtype {img.dtype}")
        work = normalise(to_working(img, spec.working_long_side), spec, dev)
        tiles = make_tiles(tuple(work.shape[1:]), tile, min(ov, tile - 1))
        jobs.append(_Job(shape=img.shape[:2], working=work, tiles=tiles, outputs=[None] * len(tiles)))

    # Group tiles of equal shape (across photos) so they stack into batches.
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for ji, job in enumerate(jobs):
        for ti, t in enumerate(job.tiles):
            groups.setdefault(t.shape, []).append((ji, ti))
    emitted = 0
    with torch.inference_mode():
        for keys in groups.values():
            inputs = [jobs[ji].working[:, t.y0 : t.y1, t.x0 : t.x1] for ji, ti in keys for t in [jobs[ji].tiles[ti]]]
            for k, out in run_batches(net, inputs, bs, dev):
                ji, ti = keys[k]
                jobs[ji].outputs[ti] = out
            # Emit photos, in order, as soon as all their tiles are done.
            while emitted < len(jobs) and all(o is not None for o in jobs[emitted].outputs):
                job = jobs[emitted]
                logits = blend_tiles(job.outputs, job.tiles, tuple(job.working.shape[1:]), taper=ov)
                jobs[emitted] = _Job(job.shape, job.working[:, :0, :0], [], [])  # free memory
                yield emitted, logits
                emitted += 1


#: The classes whose evidence :func:`predict_labels_and_evidence` returns, in channel order.
EVIDENCE_CLASSES: tuple[int, ...] = (LESION, HAIR)


def class_evidence(logits: torch.Tensor, cls: int) -> np.ndarray:
    """The network's evidence for class ``cls`` against every other class, per working pixel.

    Parameters
    ----------
    logits : (C, h, w) float tensor
        Blended working-resolution logits (or log-probabilities with test-time
        augmentation), classes in the label contract's order.
    cls : int
        The class (a label value).

    Returns
    -------
    (h, w) float32 ndarray
        ``logits[cls] - max(logits[other classes])``: the log-odds of ``cls`` against
        the strongest other class (the same for logits and log-probabilities). It is
        positive exactly where the arg-max is ``cls``, and its size says how sure.
    """
    lg = logits.float()
    others = torch.cat([lg[:cls], lg[cls + 1 :]]).amax(dim=0)
    return (lg[cls] - others).cpu().numpy()


def lesion_evidence(logits: torch.Tensor) -> np.ndarray:
    """:func:`class_evidence` for lesion: the log-odds of lesion against the strongest other class."""
    return class_evidence(logits, LESION)


def predict_labels(
    images: Sequence[np.ndarray],
    model: SegmentationModel,
    *,
    batch_size: int | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    strip_rows: int = STRIP_ROWS,
) -> list[np.ndarray]:
    """Label maps of RGB photos with the CNN.

    Parameters
    ----------
    images : sequence of (H, W, 3) uint8 ndarray
        RGB photos of any sizes.
    model : SegmentationModel
        The loaded model (its device is used).
    batch_size : int, optional
        Tiles per forward pass (default 1 on the CPU, 16 on CUDA; halved on GPU
        out-of-memory).
    tile_size, overlap : int, optional
        Tiling at the working resolution (default: the model card's).
    strip_rows : int
        Full-resolution rows computed at once.

    Returns
    -------
    list of (H, W) uint8 ndarray
        Label maps in the label contract, each at its photo's full resolution.

    Raises
    ------
    ModelError
        Out of memory even with one tile per batch.
    ValueError
        An image that is not ``(H, W, 3) uint8``.
    """
    # The evidence is a by-product at the working resolution (milliseconds).
    pairs = predict_labels_and_evidence(images, model, batch_size=batch_size, tile_size=tile_size, overlap=overlap, strip_rows=strip_rows)
    return [labels for labels, _ in pairs]


def predict_labels_and_evidence(
    images: Sequence[np.ndarray],
    model: SegmentationModel,
    *,
    batch_size: int | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    strip_rows: int = STRIP_ROWS,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Label maps and lesion and hair evidence (:func:`class_evidence`) of RGB photos with the CNN.

    Parameters and errors are those of :func:`predict_labels`.

    Returns
    -------
    list of ((H, W) uint8 ndarray, (h, w, 2) float32 ndarray)
        Each photo's label map at full resolution and its evidence for the classes of
        :data:`EVIDENCE_CLASSES` (channel 0 lesion, channel 1 hair) at the model's
        working resolution (small: the long side is at most the card's
        ``working_long_side``).
    """
    out: list[tuple[np.ndarray, np.ndarray]] = [(np.empty((0, 0), np.uint8), np.empty((0, 0, len(EVIDENCE_CLASSES)), np.float32))] * len(images)
    with torch.inference_mode():
        for i, logits in predict_logits(images, model, batch_size=batch_size, tile_size=tile_size, overlap=overlap):
            evidence = np.stack([class_evidence(logits, c) for c in EVIDENCE_CLASSES], axis=-1)
            out[i] = (upsample_argmax(logits, images[i].shape[:2], strip_rows=strip_rows), evidence)
    return out
