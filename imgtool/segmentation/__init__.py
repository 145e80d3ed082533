"""Segmentation of a photo into background, skin, lesion and hair.

Two methods share one entry point, :func:`segment`:

* ``"classical"``: colour rules and morphology (:mod:`.classical`), the baseline;

The label contract is in :mod:`imgtool.labels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .._version import __version__
from ..errors import UsageError
from ..io import DEFAULT_MAX_PIXELS, ImageInfo, ImageSource, as_image
from ..labels import check_labels
from ..quantify import PhotoMetrics, photo_metrics
from .classical import ClassicalOptions, segment_classical

METHODS: tuple[str, ...] = ("classical",)
DEFAULT_METHOD: str = "classical"


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
    classical_options: ClassicalOptions | None = None,
) -> list[np.ndarray]:
    """Label maps of RGB images with the chosen method.

    Parameters
    ----------
    images : sequence of (H, W, 3) uint8 ndarray
        RGB photos (sizes may differ).
    method : str
        ``"classical"``.
    classical_options : ClassicalOptions, optional
        Settings of the classical method.

    Returns
    -------
    list of (H, W) uint8 ndarray
    """
    check_method(method)
    return [segment_classical(img, options=classical_options) for img in images]


def model_info(method: str) -> dict[str, str] | None:
    """The ``model`` entry of results for a method (None for the classical method)."""
    return None


def segment(
    image: ImageSource,
    *,
    method: str = DEFAULT_METHOD,
    roi: ImageSource | None = None,
    pixel_size_mm: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
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

    Returns
    -------
    SegmentResult

    Raises
    ------
    InputError
        Unreadable image or ROI, or an ROI of another size.
    UsageError
        Unknown method.
    """
    return segment_many([image], method=method, roi=roi, pixel_size_mm=pixel_size_mm, max_pixels=max_pixels)[0]


def segment_many(
    images: Sequence[ImageSource],
    *,
    method: str = DEFAULT_METHOD,
    roi: ImageSource | None = None,
    pixel_size_mm: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[SegmentResult]:
    """Segment several photos (batched where the method allows) and measure each.

    Parameters are those of :func:`segment`; ``roi`` applies to every image.
    """
    from ..io import read_mask

    check_method(method)
    loaded = [as_image(src, max_pixels=max_pixels) for src in images]
    label_maps = segment_labels([img for img, _ in loaded], method=method)
    results = []
    for (img, info), labels in zip(loaded, label_maps):
        roi_mask = None if roi is None else read_mask(roi, shape=img.shape[:2], name="ROI")
        results.append(
            SegmentResult(
                labels=check_labels(labels),
                image=info,
                method=method,
                model=model_info(method),
                metrics=photo_metrics(labels, roi=roi_mask, pixel_size_mm=pixel_size_mm),
            )
        )
    return results
