"""Segmentation of a photo into background, skin, lesion and hair.

Two methods share one entry point, :func:`segment_labels` (and :func:`segment` for
a photo with its metrics):

* ``"cnn"`` (default): a small U-Net (:mod:`.network`) run in tiles at a working
  resolution (:mod:`.inference`, :mod:`.tiling`), with shipped, hash-checked
  weights (:mod:`.model`); trained by ``imgtool train`` (:mod:`.train`);
* ``"classical"``: colour rules and morphology (:mod:`.classical`), the baseline.

The label contract is in :mod:`imgtool.labels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

from .._version import __version__
from ..errors import UsageError
from ..io import DEFAULT_MAX_PIXELS, ImageInfo, ImageSource, as_image
from ..labels import check_labels
from ..quantify import PhotoMetrics, photo_metrics
from .classical import ClassicalOptions, segment_classical
from .inference import predict_labels_and_evidence
from .model import DEFAULT_MODEL_NAME, SegmentationModel, load_model, resolve_device

METHODS: tuple[str, ...] = ("cnn", "classical")
DEFAULT_METHOD: str = "cnn"
#: Photos run through the CNN together (their tiles share batches); bounds memory for long lists.
IMAGES_PER_CHUNK: int = 8


@dataclass(frozen=True)
class SegmentResult:
    """One photo's segmentation and metrics.

    Attributes
    ----------
    labels : (H, W) uint8 ndarray
        Label map in the photo's frame.
    image : ImageInfo
        The photo.
    method : str
        ``"cnn"`` or ``"classical"``.
    model : dict or None
        ``{"name", "sha256"}`` of the CNN weights; None for the classical method.
    metrics : PhotoMetrics
        Areas and fractions of ``labels``.
    """

    labels: np.ndarray = field(compare=False, repr=False)
    image: ImageInfo
    method: str
    model: dict[str, str] | None
    metrics: PhotoMetrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "imgtool_version": __version__,
            "image": self.image.to_dict(),
            "method": self.method,
            "model": self.model,
            "metrics": self.metrics.to_dict(),
        }


def check_method(method: str) -> str:
    """Return ``method`` if it is a known segmentation method, else raise UsageError."""
    if method not in METHODS:
        raise UsageError(f"unknown segmentation method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def segment_labels(
    images: Sequence[np.ndarray],
    *,
    method: str = DEFAULT_METHOD,
    model: SegmentationModel | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    classical_options: ClassicalOptions | None = None,
) -> list[np.ndarray]:
    """Label maps of RGB images with the chosen method.

    Parameters
    ----------
    images : sequence of (H, W, 3) uint8 ndarray
        RGB photos (sizes may differ).
    method : str
        ``"cnn"`` or ``"classical"``.
    model : SegmentationModel, optional
        The CNN to use (method ``"cnn"``); default: load the shipped default model
        on ``device``. A given model runs on its own device.
    device : str or torch.device
        ``"auto"``, ``"cpu"`` or ``"cuda"``, used when ``model`` is None.
    batch_size : int, optional
        Tiles per forward pass (CNN); default 1 on the CPU, 16 on CUDA.
    classical_options : ClassicalOptions, optional
        Settings of the classical method.

    Returns
    -------
    list of (H, W) uint8 ndarray
        One label map per image, at the image's size (label contract).

    Raises
    ------
    UsageError
        Unknown method or device, or CUDA asked for without one.
    ModelError
        The default model is missing or corrupt.
    """
    labels, _ = segment_labels_with_evidence(
        images, method=method, model=model, device=device, batch_size=batch_size, classical_options=classical_options
    )
    return labels


def segment_labels_with_evidence(
    images: Sequence[np.ndarray],
    *,
    method: str = DEFAULT_METHOD,
    model: SegmentationModel | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    classical_options: ClassicalOptions | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Label maps, and the CNN's lesion and hair evidence, of RGB images.

    The evidence (:func:`imgtool.segmentation.inference.class_evidence`: the network's
    log-odds of lesion, and of hair, against the strongest other class, at its working
    resolution) lets a pair's reconciliation (:func:`imgtool.quantify.reconcile_lesion_labels`,
    :func:`imgtool.quantify.reconcile_hair_labels`) weigh both photos' evidence where they
    disagree. The classical method has none.

    Parameters
    ----------
    images, method, model, device, batch_size, classical_options
        As for :func:`segment_labels`.

    Returns
    -------
    labels : list of (H, W) uint8 ndarray
        One label map per image, at the image's size.
    evidence : list of (h, w, 2) float32 ndarray or None
        One per image, at the CNN's working resolution: channel 0 the lesion evidence,
        channel 1 the hair evidence (``inference.EVIDENCE_CLASSES``); None for the
        classical method.

    Raises
    ------
    UsageError, ModelError
        As for :func:`segment_labels`.
    """
    check_method(method)
    if method == "classical":
        return [segment_classical(img, options=classical_options) for img in images], [None] * len(images)
    if model is None:
        model = load_model(None, device=device)
    labels: list[np.ndarray] = []
    evidence: list[np.ndarray | None] = []
    for i in range(0, len(images), IMAGES_PER_CHUNK):
        for lab, ev in predict_labels_and_evidence(images[i : i + IMAGES_PER_CHUNK], model, batch_size=batch_size):
            labels.append(lab)
            evidence.append(ev)
    return labels, evidence


def model_info(method: str, model: SegmentationModel | None = None) -> dict[str, str] | None:
    """The ``model`` entry of results: ``{"name", "sha256", "device"}`` of the CNN, None for the classical method.

    Parameters
    ----------
    method : str
        Segmentation method.
    model : SegmentationModel, optional
        The CNN that was used (method ``"cnn"``).
    """
    check_method(method)
    if method == "classical" or model is None:
        return None
    return model.info()


def prepare_model(method: str, model: SegmentationModel | None, device: str | torch.device, augment: bool = False) -> SegmentationModel | None:
    """The model a run of ``method`` uses: ``model``, or the shipped default loaded on ``device`` (None for classical).

    With ``augment`` the model runs with test-time augmentation (mirror images),
    whether it was given or loaded here.
    """
    check_method(method)
    if method == "classical":
        return None
    if model is None:
        return load_model(None, device=device, augment=augment)
    return replace(model, augment=True) if augment and not model.augment else model


def segment(
    image: ImageSource,
    *,
    method: str = DEFAULT_METHOD,
    roi: ImageSource | None = None,
    pixel_size_mm: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    model: SegmentationModel | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
) -> SegmentResult:
    """Segment one photo and measure it.

    Parameters
    ----------
    image : path-like or (H, W, 3) uint8 ndarray
        The photo.
    method : str
        Segmentation method (see :data:`METHODS`).
    roi : path-like or (H, W) bool ndarray, optional
        Region of interest in the photo's frame; default everything not background.
    pixel_size_mm : float, optional
        Pixel side in mm, for ``*_mm2`` areas.
    max_pixels : int, optional
        Refuse larger images.
    model : SegmentationModel, optional
        The CNN (method ``"cnn"``); default: the shipped model loaded on ``device``.
    device : str or torch.device
        ``"auto"``, ``"cpu"`` or ``"cuda"``, used when ``model`` is None.
    batch_size : int, optional
        Tiles per forward pass of the CNN.

    Returns
    -------
    SegmentResult

    Raises
    ------
    InputError
        Unreadable image or ROI, or an ROI of another size.
    UsageError
        Unknown method or device.
    ModelError
        The CNN's weights are missing or corrupt.
    """
    return segment_many(
        [image],
        method=method,
        roi=roi,
        pixel_size_mm=pixel_size_mm,
        max_pixels=max_pixels,
        model=model,
        device=device,
        batch_size=batch_size,
    )[0]


def segment_many(
    images: Sequence[ImageSource],
    *,
    method: str = DEFAULT_METHOD,
    roi: ImageSource | None = None,
    pixel_size_mm: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    model: SegmentationModel | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
) -> list[SegmentResult]:
    """Segment several photos (batched where the method allows) and measure each.

    Parameters are those of :func:`segment`; ``roi`` applies to every image.
    """
    from ..io import read_mask

    model = prepare_model(method, model, device)
    loaded = [as_image(src, max_pixels=max_pixels) for src in images]
    label_maps = segment_labels([img for img, _ in loaded], method=method, model=model, batch_size=batch_size)
    results = []
    for (img, info), labels in zip(loaded, label_maps):
        roi_mask = None if roi is None else read_mask(roi, shape=img.shape[:2], name="ROI")
        results.append(
            SegmentResult(
                labels=check_labels(labels),
                image=info,
                method=method,
                model=model_info(method, model),
                metrics=photo_metrics(labels, roi=roi_mask, pixel_size_mm=pixel_size_mm),
            )
        )
    return results


__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_MODEL_NAME",
    "IMAGES_PER_CHUNK",
    "METHODS",
    "ClassicalOptions",
    "SegmentResult",
    "SegmentationModel",
    "check_method",
    "load_model",
    "model_info",
    "prepare_model",
    "resolve_device",
    "segment",
    "segment_labels",
    "segment_labels_with_evidence",
    "segment_many",
]
